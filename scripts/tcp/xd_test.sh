#!/bin/bash
# TCP, cross-dataset / domain generalisation: evaluate the source model on DATASET.
# Usage: bash scripts/tcp/xd_test.sh DATASET SEED [KEY VALUE ...]    (data: DATA=/path/to/datasets)
# Environment and output layout: scripts/common.sh.
source "$(dirname "${BASH_SOURCE[0]}")/method.sh"  # TRAINER, CFG, XD_CFG, METHOD_OPTS, tcp_load_epoch
if [ "$#" -ge 2 ]; then
    dcfg="$(dataset_config "$1")" || exit 1
    tcp_load_epoch "$(source_dataset "$dcfg")" "${@:3}"
fi
xd_test "$@"
