#!/bin/bash
# DePT (BASE=CoOp | CoCoOp | KgCoOp | MaPLe), base-to-novel: evaluate the trained model on the new classes (its head is not used there).
# Usage: BASE=CoOp bash scripts/dept/base2new_test.sh DATASET SEED [KEY VALUE ...]    (data: DATA=/path/to/datasets)
# Environment and output layout: scripts/common.sh; BASE: method.sh.
source "$(dirname "${BASH_SOURCE[0]}")/method.sh"  # BASE -> TRAINER, CFG, XD_CFG
base2new_test "$@"
