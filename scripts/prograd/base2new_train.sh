#!/bin/bash
# ProGrad, base-to-novel: train on the base classes (SHOTS=4 shots; VARIANT=release: 16).
# Usage: bash scripts/prograd/base2new_train.sh DATASET SEED [KEY VALUE ...]    (data: DATA=/path/to/datasets)
# Environment and output layout: scripts/common.sh; LAMBDA and VARIANT=release: method.sh.
source "$(dirname "${BASH_SOURCE[0]}")/method.sh"  # TRAINER, CFG, XD_CFG, SHOTS, METHOD_OPTS (LAMBDA, VARIANT)
base2new_train "$@"
