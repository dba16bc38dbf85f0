#!/bin/bash
# DePT (BASE=CoOp | CoCoOp | KgCoOp | MaPLe), cross-dataset / domain generalisation: evaluate the source
# model on DATASET (its head is used where DATASET's classes are among the source's, matched by name).
# Usage: BASE=CoOp bash scripts/dept/xd_test.sh DATASET SEED [KEY VALUE ...]    (data: DATA=/path/to/datasets)
# Environment and output layout: scripts/common.sh; BASE: method.sh.
source "$(dirname "${BASH_SOURCE[0]}")/method.sh"  # BASE -> TRAINER, CFG, XD_CFG
xd_test "$@"
