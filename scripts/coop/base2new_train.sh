#!/bin/bash
# CoOp, base-to-novel: train on the base classes (SHOTS=16 shots).
# Usage: bash scripts/coop/base2new_train.sh DATASET SEED [KEY VALUE ...]    (data: DATA=/path/to/datasets)
# Environment and output layout: scripts/common.sh.
TRAINER=CoOp
CFG=vit_b16_ctxv1
XD_CFG=vit_b16_ep50_ctxv1
source "$(dirname "${BASH_SOURCE[0]}")/../common.sh"
base2new_train "$@"
