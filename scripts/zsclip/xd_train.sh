#!/bin/bash
# Zero-shot CLIP (nothing is trained: the train scripts evaluate the base classes / the source), cross-dataset / domain generalisation: train on the source (imagenet; objects on the testbed), all classes.
# Usage: bash scripts/zsclip/xd_train.sh DATASET SEED [KEY VALUE ...]    (data: DATA=/path/to/datasets)
# Environment and output layout: scripts/common.sh.
TRAINER=ZeroshotCLIP
CFG=vit_b16
XD_CFG=vit_b16
source "$(dirname "${BASH_SOURCE[0]}")/../common.sh"
xd_train "$@"
