#!/bin/bash
# CoCoOp, base-to-novel: evaluate the trained model on the new classes.
# Usage: bash scripts/cocoop/base2new_test.sh DATASET SEED [KEY VALUE ...]    (data: DATA=/path/to/datasets)
# Environment and output layout: scripts/common.sh.
TRAINER=CoCoOp
CFG=vit_b16_c4_ep10_batch1_ctxv1
XD_CFG=vit_b16_c4_ep10_batch1_ctxv1
source "$(dirname "${BASH_SOURCE[0]}")/../common.sh"
base2new_test "$@"
