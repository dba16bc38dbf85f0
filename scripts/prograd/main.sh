#!/bin/bash
# ProGrad, its authors' few-shot protocol (CoOp's main.sh: all classes; trains, then tests; seeds $SEEDS,
# default 1 2 3), as their prograd.sh.
# Usage: bash scripts/prograd/main.sh DATASET CFG CTP NCTX SHOTS CSC [KEY VALUE ...]
#   e.g. bash scripts/prograd/main.sh caltech101 rn50_ep50 end 16 1 False    (data: DATA=/path/to/datasets)
#   CFG: configs/trainers/ProGrad/<CFG>.yaml; the authors' README: rn50_ep50 for 1 shot, rn50_ep100 for 2 and 4,
#   rn50 for 8 and 16. LAMBDA: 0.8 for 8 and 16 shots of oxford_flowers, dtd and eurosat, else 1.0 (their
#   README's values; LAMBDA=<value> sets it).
# Output: OUTPUT/DATASET/ProGrad/CFG_SHOTSshots/nctxNCTX_cscCSC_ctpCTP/seedSEED (as their prograd.sh).
TRAINER=ProGrad
CFG=rn50
case "${1:-}:${5:-}" in
    oxford_flowers:8|oxford_flowers:16|dtd:8|dtd:16|eurosat:8|eurosat:16) lambda=0.8 ;;
    *) lambda=1.0 ;;
esac
METHOD_OPTS=(TRAINER.PROGRAD.LOSS.LAMBDA "${LAMBDA:-$lambda}")
source "$(dirname "${BASH_SOURCE[0]}")/../common.sh"
fewshot_train "$@"
