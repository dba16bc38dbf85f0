#!/bin/bash
# Zero-shot CLIP (nothing is trained: the train scripts evaluate the base classes / the source), cross-dataset / domain generalisation: evaluate the source model on DATASET.
# Usage: bash scripts/zsclip/xd_test.sh DATASET SEED [KEY VALUE ...]    (data: DATA=/path/to/datasets)
# Environment and output layout: scripts/common.sh.
TRAINER=ZeroshotCLIP
CFG=vit_b16
XD_CFG=vit_b16
source "$(dirname "${BASH_SOURCE[0]}")/../common.sh"
xd_test "$@"
