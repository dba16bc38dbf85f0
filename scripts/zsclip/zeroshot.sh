#!/bin/bash
# Zero-shot CLIP on all classes of DATASET's test set, as CoOp's scripts/coop/zeroshot.sh.
# Usage: bash scripts/zsclip/zeroshot.sh DATASET CFG [KEY VALUE ...]    (data: DATA=/path/to/datasets)
#   CFG: configs/trainers/ZeroshotCLIP/<CFG>.yaml: rn50, rn101, vit_b32 or vit_b16.
# Output: OUTPUT/ZeroshotCLIP/CFG/DATASET.
TRAINER=ZeroshotCLIP
CFG=rn50
source "$(dirname "${BASH_SOURCE[0]}")/../common.sh"
zeroshot_eval "$@"
