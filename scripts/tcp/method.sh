# TCP's trainer, config and its authors' script values, sourced by the scripts in this folder.
# Its authors' base-to-novel setting (htyao89/Textual-based_Class-aware_prompt_tuning, its base-to-novel train script):
#   configs/trainers/TCP/vit_b16_ep100_ctxv1.yaml (Adam, eps 1e-3, batch 32, 50 epochs; 25 on ImageNet and
#   SUN397), 4 random context tokens, W=1.0 (read and, as in their code, unused). They publish base-to-novel
#   only: the cross-dataset source trains with the same config. docs/REPRODUCING.md section "TCP".
TRAINER=TCP
CFG=vit_b16_ep100_ctxv1
XD_CFG=vit_b16_ep100_ctxv1
METHOD_OPTS=(TRAINER.TCP.N_CTX 4 TRAINER.TCP.CSC False TRAINER.TCP.W 1.0 TRAINER.TCP.CLASS_TOKEN_POSITION end)
source "$(dirname "${BASH_SOURCE[0]}")/../common.sh"

# Their train.py trains ImageNet and SUN397 for 25 epochs (TCP's per-dataset override): the test scripts evaluate
# that epoch of a model trained there, unless LOADEP or an OPTIM.MAX_EPOCH override says which.
tcp_load_epoch() {  # tcp_load_epoch TRAINED_DATASET [KEY VALUE ...]
    local dataset="$1"
    shift
    if [ -n "${LOADEP:-}" ]; then return; fi
    while [ "$#" -ge 2 ]; do
        if [ "$1" = "OPTIM.MAX_EPOCH" ]; then return; fi
        shift 2
    done
    case "$dataset" in imagenet | sun397) LOADEP=25 ;; esac
}
