#!/bin/bash
# MMA, cross-dataset / domain generalisation: evaluate the source model on DATASET.
# Usage: bash scripts/mma/xd_test.sh DATASET SEED [KEY VALUE ...]    (data: DATA=/path/to/datasets)
# Environment and output layout: scripts/common.sh; configs: method.sh.
source "$(dirname "${BASH_SOURCE[0]}")/method.sh"  # TRAINER, CFG (ImageNet: its own), XD_CFG
xd_test "$@"
