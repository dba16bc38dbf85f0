#!/bin/bash
# MMA, base-to-novel: train on the base classes (SHOTS=16 shots).
# Usage: bash scripts/mma/base2new_train.sh DATASET SEED [KEY VALUE ...]    (data: DATA=/path/to/datasets)
# Environment and output layout: scripts/common.sh; configs: method.sh.
source "$(dirname "${BASH_SOURCE[0]}")/method.sh"  # TRAINER, CFG (ImageNet: its own), XD_CFG
base2new_train "$@"
