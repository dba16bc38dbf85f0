#!/bin/bash
# RESTORE_p (RESTORE on PromptSRC), base-to-novel: evaluate the trained model on the new classes.
# Usage: bash scripts/restore_p/base2new_test.sh DATASET SEED [KEY VALUE ...]    (data: DATA=/path/to/datasets)
# Environment and output layout: scripts/common.sh.
TRAINER=RESTORE_p
CFG=vit_b16_c2_ep20_batch4_4+4ctx
XD_CFG=vit_b16_c2_ep20_batch4_4+4ctx_cross_datasets
source "$(dirname "${BASH_SOURCE[0]}")/../common.sh"
base2new_test "$@"
