# DePT's trainer, configs and its authors' settings, sourced by the scripts in this folder.
# BASE=CoOp | CoCoOp | KgCoOp | MaPLe (default CoOp) picks the base method: trainer <BASE>_DePT with the config
# of the authors' task "<base>_dept" (Koorye/DePT configs.py), e.g. configs/trainers/CoOp_DePT/vit_b16_ep10_bs4_lr35.yaml.
# The authors ship one config per base and use it for base-to-novel, cross-dataset and DG alike (10 epochs,
# 16 shots). docs/REPRODUCING.md, "DePT".
BASE="${BASE:-CoOp}"
case "$BASE" in
    CoOp) CFG=vit_b16_ep10_bs4_lr35 ;;
    CoCoOp) CFG=vit_b16_c4_ep10_batch1_ctxv1 ;;
    KgCoOp) CFG=vit_b16_ep10_ctxv1_bs4_lr35 ;;
    MaPLe) CFG=vit_b16_c2_ep10_batch4_2ctx ;;
    *) echo "Error: BASE=$BASE: DePT runs on CoOp, CoCoOp, KgCoOp or MaPLe (BASE=CoOp ...)" >&2; exit 1 ;;
esac
TRAINER="${BASE}_DePT"
XD_CFG="$CFG"
source "$(dirname "${BASH_SOURCE[0]}")/../common.sh"
