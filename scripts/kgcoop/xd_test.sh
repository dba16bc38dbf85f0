#!/bin/bash
# KgCoOp, cross-dataset / domain generalisation: evaluate the source model on DATASET.
# Usage: bash scripts/kgcoop/xd_test.sh DATASET SEED [KEY VALUE ...]    (data: DATA=/path/to/datasets)
# Environment and output layout: scripts/common.sh; W (weight) and VARIANT=release: method.sh.
source "$(dirname "${BASH_SOURCE[0]}")/method.sh"  # TRAINER, CFG, XD_CFG, METHOD_OPTS (W, VARIANT=release)
xd_test "$@"
