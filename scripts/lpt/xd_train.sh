#!/bin/bash
# Deep language prompt tuning (LPT), cross-dataset / domain generalisation: train on the source (imagenet; objects on the testbed), all classes.
# Usage: bash scripts/lpt/xd_train.sh DATASET SEED [KEY VALUE ...]    (data: DATA=/path/to/datasets)
# Environment and output layout: scripts/common.sh.
TRAINER=LPT
CFG=vit_b16_c2_ep5_batch4_4ctx_language_only
XD_CFG=vit_b16_c2_ep5_batch4_4ctx_language_only
source "$(dirname "${BASH_SOURCE[0]}")/../common.sh"
xd_train "$@"
