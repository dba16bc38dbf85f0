#!/bin/bash
# Deep vision prompt tuning (VPT), base-to-novel: train on the base classes (SHOTS=16 shots).
# Usage: bash scripts/vpt/base2new_train.sh DATASET SEED [KEY VALUE ...]    (data: DATA=/path/to/datasets)
# Environment and output layout: scripts/common.sh.
TRAINER=VPT
CFG=vit_b16_c2_ep5_batch4_4
XD_CFG=vit_b16_c2_ep5_batch4_4
source "$(dirname "${BASH_SOURCE[0]}")/../common.sh"
base2new_train "$@"
