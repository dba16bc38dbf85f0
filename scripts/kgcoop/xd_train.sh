#!/bin/bash
# KgCoOp, cross-dataset / domain generalisation: train on the source (imagenet; objects on the testbed), all classes.
# Usage: bash scripts/kgcoop/xd_train.sh DATASET SEED [KEY VALUE ...]    (data: DATA=/path/to/datasets)
# Environment and output layout: scripts/common.sh; W (weight) and VARIANT=release: method.sh.
source "$(dirname "${BASH_SOURCE[0]}")/method.sh"  # TRAINER, CFG, XD_CFG, METHOD_OPTS (W, VARIANT=release)
xd_train "$@"
