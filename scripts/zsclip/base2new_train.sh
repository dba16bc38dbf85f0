#!/bin/bash
# Zero-shot CLIP (nothing is trained: the train scripts evaluate the base classes / the source), base-to-novel: train on the base classes (SHOTS=16 shots).
# Usage: bash scripts/zsclip/base2new_train.sh DATASET SEED [KEY VALUE ...]    (data: DATA=/path/to/datasets)
# Environment and output layout: scripts/common.sh.
TRAINER=ZeroshotCLIP
CFG=vit_b16
XD_CFG=vit_b16
source "$(dirname "${BASH_SOURCE[0]}")/../common.sh"
base2new_train "$@"
