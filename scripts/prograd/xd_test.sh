#!/bin/bash
# ProGrad, cross-dataset / domain generalisation: evaluate the source model on DATASET.
# Usage: bash scripts/prograd/xd_test.sh DATASET SEED [KEY VALUE ...]    (data: DATA=/path/to/datasets)
# Environment and output layout: scripts/common.sh; LAMBDA and VARIANT=release: method.sh.
source "$(dirname "${BASH_SOURCE[0]}")/method.sh"  # TRAINER, CFG, XD_CFG, SHOTS, METHOD_OPTS (LAMBDA, VARIANT)
xd_test "$@"
