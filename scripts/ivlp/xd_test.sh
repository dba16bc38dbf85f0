#!/bin/bash
# Independent V-L prompting (IVLP), cross-dataset / domain generalisation: evaluate the source model on DATASET.
# Usage: bash scripts/ivlp/xd_test.sh DATASET SEED [KEY VALUE ...]    (data: DATA=/path/to/datasets)
# Environment and output layout: scripts/common.sh.
TRAINER=IVLP
CFG=vit_b16_c2_ep5_batch4_2+2ctx
XD_CFG=vit_b16_c2_ep5_batch4_2+2ctx
source "$(dirname "${BASH_SOURCE[0]}")/../common.sh"
xd_test "$@"
