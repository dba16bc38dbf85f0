#!/bin/bash
# PromptSRC, cross-dataset / domain generalisation: evaluate the source model on DATASET.
# Usage: bash scripts/promptsrc/xd_test.sh DATASET SEED [KEY VALUE ...]    (data: DATA=/path/to/datasets)
# Environment and output layout: scripts/common.sh.
TRAINER=PromptSRC
CFG=vit_b16_c2_ep20_batch4_4+4ctx
XD_CFG=vit_b16_c2_ep20_batch4_4+4ctx_cross_datasets
source "$(dirname "${BASH_SOURCE[0]}")/../common.sh"
xd_test "$@"
