# KgCoOp's trainer, configs and its authors' script values, sourced by the scripts in this folder.
# Default: its authors' base-to-novel setting (htyao89/KgCoOp: its base2new_train.sh and run.sh):
#   configs/trainers/KgCoOp/vit_b16_ep100_ctxv1.yaml (batch 128, 100 epochs), 4 context tokens "a photo of a",
#   weight W=8.0. The authors ship no cross-dataset script: the source trains with the same config.
# VARIANT=release: the official RESTORE release's runs (batch 4, 10 epochs; 2 across datasets; W=1.0; its
#   hand prompts). W=<weight> sets the weight (TRAINER.KGCOOP.W) either way. docs/REPRODUCING.md section 12.
TRAINER=KgCoOp
CFG=vit_b16_ep100_ctxv1
XD_CFG=vit_b16_ep100_ctxv1
WEIGHT="${W:-8.0}"
if [ "${VARIANT:-}" = "release" ]; then
    CFG=vit_b16_ep10_ctxv1
    XD_CFG=vit_b16_ep2_ctxv1_crossdataset
    WEIGHT="${W:-1.0}"
fi
METHOD_OPTS=(TRAINER.KGCOOP.N_CTX 4 TRAINER.KGCOOP.CSC False TRAINER.KGCOOP.W "$WEIGHT"
             TRAINER.KGCOOP.CLASS_TOKEN_POSITION end)
source "$(dirname "${BASH_SOURCE[0]}")/../common.sh"
