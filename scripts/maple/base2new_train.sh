#!/bin/bash
# MaPLe, base-to-novel: train on the base classes (SHOTS=16 shots).
# Usage: bash scripts/maple/base2new_train.sh DATASET SEED [KEY VALUE ...]    (data: DATA=/path/to/datasets)
# Environment and output layout: scripts/common.sh.
TRAINER=MaPLe
CFG=vit_b16_c2_ep5_batch4_2ctx
XD_CFG=vit_b16_c2_ep5_batch4_2ctx_cross_datasets
source "$(dirname "${BASH_SOURCE[0]}")/../common.sh"
base2new_train "$@"
