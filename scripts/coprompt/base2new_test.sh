#!/bin/bash
# CoPrompt, base-to-novel: evaluate the base-trained model on the new classes (Food101: epoch 5, the authors').
# Usage: bash scripts/coprompt/base2new_test.sh DATASET SEED [KEY VALUE ...]    (data: DATA=/path/to/datasets)
# Environment and output layout: scripts/common.sh; method.sh.
source "$(dirname "${BASH_SOURCE[0]}")/method.sh"  # TRAINER, CFG, METHOD_OPTS, LOADEP (Food101)
base2new_test "$@"
