#!/bin/bash
# DePT (BASE=CoOp | CoCoOp | KgCoOp | MaPLe), base-to-novel: train on the base classes (SHOTS=16 shots).
# Usage: BASE=CoOp bash scripts/dept/base2new_train.sh DATASET SEED [KEY VALUE ...]    (data: DATA=/path/to/datasets)
# Environment and output layout: scripts/common.sh; BASE: method.sh.
source "$(dirname "${BASH_SOURCE[0]}")/method.sh"  # BASE -> TRAINER, CFG, XD_CFG
base2new_train "$@"
