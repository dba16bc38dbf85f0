#!/bin/bash
# CoCoOp, cross-dataset / domain generalisation: train on the source (imagenet; objects on the testbed), all classes.
# Usage: bash scripts/cocoop/xd_train.sh DATASET SEED [KEY VALUE ...]    (data: DATA=/path/to/datasets)
# Environment and output layout: scripts/common.sh.
TRAINER=CoCoOp
CFG=vit_b16_c4_ep10_batch1_ctxv1
XD_CFG=vit_b16_c4_ep10_batch1_ctxv1
source "$(dirname "${BASH_SOURCE[0]}")/../common.sh"
xd_train "$@"
