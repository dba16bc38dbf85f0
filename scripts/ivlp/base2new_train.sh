#!/bin/bash
# Independent V-L prompting (IVLP), base-to-novel: train on the base classes (SHOTS=16 shots).
# Usage: bash scripts/ivlp/base2new_train.sh DATASET SEED [KEY VALUE ...]    (data: DATA=/path/to/datasets)
# Environment and output layout: scripts/common.sh.
TRAINER=IVLP
CFG=vit_b16_c2_ep5_batch4_2+2ctx
XD_CFG=vit_b16_c2_ep5_batch4_2+2ctx
source "$(dirname "${BASH_SOURCE[0]}")/../common.sh"
base2new_train "$@"
