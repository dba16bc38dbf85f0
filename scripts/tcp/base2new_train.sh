#!/bin/bash
# TCP, base-to-novel: train on the base classes (SHOTS=16 shots).
# Usage: bash scripts/tcp/base2new_train.sh DATASET SEED [KEY VALUE ...]    (data: DATA=/path/to/datasets)
# Environment and output layout: scripts/common.sh.
source "$(dirname "${BASH_SOURCE[0]}")/method.sh"  # TRAINER, CFG, XD_CFG, METHOD_OPTS
base2new_train "$@"
