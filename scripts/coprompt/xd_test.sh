#!/bin/bash
# CoPrompt, cross-dataset / domain generalisation: evaluate the source-trained model on DATASET with the
# source's row of the authors' table (not the target's).
# Usage: bash scripts/coprompt/xd_test.sh DATASET SEED [KEY VALUE ...]    (data: DATA=/path/to/datasets)
# Environment and output layout: scripts/common.sh; method.sh.
source "$(dirname "${BASH_SOURCE[0]}")/method.sh"  # TRAINER, CFG, METHOD_OPTS
[ "$#" -lt 1 ] || source_row "$1"
xd_test "$@"
