#!/bin/bash
# TCP, cross-dataset / domain generalisation: train on the source (imagenet; objects on the testbed), all classes.
# Usage: bash scripts/tcp/xd_train.sh DATASET SEED [KEY VALUE ...]    (data: DATA=/path/to/datasets)
# Environment and output layout: scripts/common.sh.
source "$(dirname "${BASH_SOURCE[0]}")/method.sh"  # TRAINER, CFG, XD_CFG, METHOD_OPTS
xd_train "$@"
