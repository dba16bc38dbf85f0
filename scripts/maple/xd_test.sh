#!/bin/bash
# MaPLe, cross-dataset / domain generalisation: evaluate the source model on DATASET.
# Usage: bash scripts/maple/xd_test.sh DATASET SEED [KEY VALUE ...]    (data: DATA=/path/to/datasets)
# Environment and output layout: scripts/common.sh.
TRAINER=MaPLe
CFG=vit_b16_c2_ep5_batch4_2ctx
XD_CFG=vit_b16_c2_ep5_batch4_2ctx_cross_datasets
source "$(dirname "${BASH_SOURCE[0]}")/../common.sh"
xd_test "$@"
