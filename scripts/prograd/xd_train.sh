#!/bin/bash
# ProGrad, cross-dataset / domain generalisation: train on the source (imagenet; objects on the testbed), all classes.
# Usage: bash scripts/prograd/xd_train.sh DATASET SEED [KEY VALUE ...]    (data: DATA=/path/to/datasets)
# Environment and output layout: scripts/common.sh; LAMBDA and VARIANT=release: method.sh.
source "$(dirname "${BASH_SOURCE[0]}")/method.sh"  # TRAINER, CFG, XD_CFG, SHOTS, METHOD_OPTS (LAMBDA, VARIANT)
xd_train "$@"
