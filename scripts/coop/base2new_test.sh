#!/bin/bash
# CoOp, base-to-novel: evaluate the trained model on the new classes.
# Usage: bash scripts/coop/base2new_test.sh DATASET SEED [KEY VALUE ...]    (data: DATA=/path/to/datasets)
# Environment and output layout: scripts/common.sh.
TRAINER=CoOp
CFG=vit_b16_ctxv1
XD_CFG=vit_b16_ep50_ctxv1
source "$(dirname "${BASH_SOURCE[0]}")/../common.sh"
base2new_test "$@"
