# RESTORE_m's trainer and configs, sourced by the scripts in this folder.
# VARIANT=release selects the official release's variant (configs *_release.yaml, per-dataset ratios of
# docs/REPRODUCING.md section 9; override with VIS_CALIB_R / TEXT_CALIB_R / FS_LOSS_R).
TRAINER=RESTORE_m
CFG=vit_b16_c2_ep10_batch4_2ctx
XD_CFG=vit_b16_c2_ep4_batch4_2ctx_cross_datasets
if [ "${VARIANT:-}" = "release" ]; then
    CFG="vit_b16_c2_ep10_batch4_2ctx_release"
    XD_CFG="vit_b16_c2_ep2_batch4_2ctx_cross_datasets_release"
fi
source "$(dirname "${BASH_SOURCE[0]}")/../common.sh"
