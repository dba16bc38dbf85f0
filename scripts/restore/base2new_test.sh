#!/bin/bash
# RESTORE_m (RESTORE on MaPLe), base-to-novel: evaluate the trained model on the new classes.
# Usage: bash scripts/restore/base2new_test.sh DATASET SEED [KEY VALUE ...]    (data: DATA=/path/to/datasets)
# Environment and output layout: scripts/common.sh.
source "$(dirname "${BASH_SOURCE[0]}")/method.sh"  # TRAINER, CFG, XD_CFG (VARIANT=release)
base2new_test "$@"
