#!/bin/bash
# CoCoOp, base-to-novel: train on the base classes (SHOTS=16 shots).
# Usage: bash scripts/cocoop/base2new_train.sh DATASET SEED [KEY VALUE ...]    (data: DATA=/path/to/datasets)
# Environment and output layout: scripts/common.sh.
TRAINER=CoCoOp
CFG=vit_b16_c4_ep10_batch1_ctxv1
XD_CFG=vit_b16_c4_ep10_batch1_ctxv1
source "$(dirname "${BASH_SOURCE[0]}")/../common.sh"
base2new_train "$@"
