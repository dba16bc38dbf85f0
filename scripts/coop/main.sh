#!/bin/bash
# CoOp, its own few-shot protocol (all classes; trains, then tests; seeds $SEEDS, default 1 2 3).
# Usage: bash scripts/coop/main.sh DATASET CFG CTP NCTX SHOTS CSC [KEY VALUE ...]
#   e.g. bash scripts/coop/main.sh caltech101 rn50_ep50 end 16 1 False    (data: DATA=/path/to/datasets)
#   CFG: configs/trainers/CoOp/<CFG>.yaml (rn50, rn50_ep50, rn50_ctxv1, rn101, vit_b32, vit_b16, ...);
#   CTP: class-token position end, middle or front; CSC: class-specific context False or True.
# Output: OUTPUT/DATASET/CoOp/CFG_SHOTSshots/nctxNCTX_cscCSC_ctpCTP/seedSEED (as CoOp's main.sh).
TRAINER=CoOp
CFG=rn50
source "$(dirname "${BASH_SOURCE[0]}")/../common.sh"
fewshot_train "$@"
