#!/bin/bash
# DePT (BASE=CoOp | CoCoOp | KgCoOp | MaPLe), cross-dataset / domain generalisation: train on the source (imagenet; objects on the testbed), all classes.
# Usage: BASE=CoOp bash scripts/dept/xd_train.sh DATASET SEED [KEY VALUE ...]    (data: DATA=/path/to/datasets)
# Environment and output layout: scripts/common.sh; BASE: method.sh.
source "$(dirname "${BASH_SOURCE[0]}")/method.sh"  # BASE -> TRAINER, CFG, XD_CFG
xd_train "$@"
