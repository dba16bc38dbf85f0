#!/bin/bash
# CoPrompt, cross-dataset / domain generalisation: train on the source (imagenet; objects on the testbed), all
# classes, with the source's row of the authors' table. The authors ship no such script (their code cannot
# configure a dataset outside its table): the base-to-novel config is used.
# Usage: DESCRIPTIONS=<file or folder> bash scripts/coprompt/xd_train.sh DATASET SEED [KEY VALUE ...]
# Environment and output layout: scripts/common.sh; method.sh.
source "$(dirname "${BASH_SOURCE[0]}")/method.sh"  # TRAINER, CFG, METHOD_OPTS (DESCRIPTIONS)
[ "${1:-}" = "-h" ] || [ "${1:-}" = "--help" ] || [ "$#" -lt 1 ] || require_descriptions "$@"
xd_train "$@"
