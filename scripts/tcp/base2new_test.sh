#!/bin/bash
# TCP, base-to-novel: evaluate the trained model on the new classes.
# Usage: bash scripts/tcp/base2new_test.sh DATASET SEED [KEY VALUE ...]    (data: DATA=/path/to/datasets)
# Environment and output layout: scripts/common.sh.
source "$(dirname "${BASH_SOURCE[0]}")/method.sh"  # TRAINER, CFG, XD_CFG, METHOD_OPTS, tcp_load_epoch
if [ "$#" -ge 2 ]; then tcp_load_epoch "$1" "${@:3}"; fi
base2new_test "$@"
