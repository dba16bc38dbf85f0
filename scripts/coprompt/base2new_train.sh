#!/bin/bash
# CoPrompt, base-to-novel: train on the base classes (SHOTS=16 shots).
# Usage: DESCRIPTIONS=<file or folder> bash scripts/coprompt/base2new_train.sh DATASET SEED [KEY VALUE ...]
# (data: DATA=/path/to/datasets; DESCRIPTIONS not needed on the testbed). Environment and output layout:
# scripts/common.sh; DESCRIPTIONS: method.sh.
source "$(dirname "${BASH_SOURCE[0]}")/method.sh"  # TRAINER, CFG, METHOD_OPTS (DESCRIPTIONS)
[ "${1:-}" = "-h" ] || [ "${1:-}" = "--help" ] || [ "$#" -lt 1 ] || require_descriptions "$@"
base2new_train "$@"
