# ProGrad's trainer, configs and its authors' script values, sourced by the scripts in this folder.
# Default: its authors' base-to-novel setting (BeierZhu/Prompt-align scripts/base2new_{train,test}_prograd.sh):
#   configs/trainers/ProGrad/rn50_ep100.yaml (RN50: they ship no ViT config), SHOTS=4, 16 context tokens from
#   the dataset's template, LAMBDA=1.0 (evaluated at epoch 100); across datasets and domains their ImageNet
#   setting, rn50_ep50.yaml (epoch 50).
# VARIANT=release: the official RESTORE release's runs (ViT-B/16, batch 4, 16 shots, random context, its hand
#   prompts; 10 epochs, 2 across datasets). LAMBDA=<value> sets TRAINER.PROGRAD.LOSS.LAMBDA either way.
#   docs/REPRODUCING.md section 12.
TRAINER=ProGrad
CFG=rn50_ep100
XD_CFG=rn50_ep50
if [ "${VARIANT:-}" = "release" ]; then
    CFG=vit_b16_ep10
    XD_CFG=vit_b16_ep10_crossdataset
    SHOTS="${SHOTS:-16}"
else
    SHOTS="${SHOTS:-4}"
fi
METHOD_OPTS=(TRAINER.PROGRAD.LOSS.LAMBDA "${LAMBDA:-1.0}" TRAINER.PROGRAD.N_CTX 16 TRAINER.PROGRAD.CSC False
             TRAINER.PROGRAD.CLASS_TOKEN_POSITION end)
source "$(dirname "${BASH_SOURCE[0]}")/../common.sh"
