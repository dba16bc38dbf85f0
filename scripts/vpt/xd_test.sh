#!/bin/bash
# Deep vision prompt tuning (VPT), cross-dataset / domain generalisation: evaluate the source model on DATASET.
# Usage: bash scripts/vpt/xd_test.sh DATASET SEED [KEY VALUE ...]    (data: DATA=/path/to/datasets)
# Environment and output layout: scripts/common.sh.
TRAINER=VPT
CFG=vit_b16_c2_ep5_batch4_4
XD_CFG=vit_b16_c2_ep5_batch4_4
source "$(dirname "${BASH_SOURCE[0]}")/../common.sh"
xd_test "$@"
