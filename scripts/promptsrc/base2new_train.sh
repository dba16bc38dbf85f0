#!/bin/bash
# PromptSRC, base-to-novel: train on the base classes (SHOTS=16 shots).
# Usage: bash scripts/promptsrc/base2new_train.sh DATASET SEED [KEY VALUE ...]    (data: DATA=/path/to/datasets)
# Environment and output layout: scripts/common.sh.
TRAINER=PromptSRC
CFG=vit_b16_c2_ep20_batch4_4+4ctx
XD_CFG=vit_b16_c2_ep20_batch4_4+4ctx_cross_datasets
source "$(dirname "${BASH_SOURCE[0]}")/../common.sh"
base2new_train "$@"
