#!/bin/bash
# RESTORE_m (RESTORE on MaPLe), cross-dataset / domain generalisation: evaluate the source model on DATASET.
# Usage: bash scripts/restore/xd_test.sh DATASET SEED [KEY VALUE ...]    (data: DATA=/path/to/datasets)
# Environment and output layout: scripts/common.sh.
source "$(dirname "${BASH_SOURCE[0]}")/method.sh"  # TRAINER, CFG, XD_CFG (VARIANT=release)
xd_test "$@"
