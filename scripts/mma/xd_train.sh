#!/bin/bash
# MMA, cross-dataset / domain generalisation: train on the source (imagenet; objects on the testbed), all classes.
# Usage: bash scripts/mma/xd_train.sh DATASET SEED [KEY VALUE ...]    (data: DATA=/path/to/datasets)
# Environment and output layout: scripts/common.sh; configs: method.sh.
source "$(dirname "${BASH_SOURCE[0]}")/method.sh"  # TRAINER, CFG (ImageNet: its own), XD_CFG
xd_train "$@"
