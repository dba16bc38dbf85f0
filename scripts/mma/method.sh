# MMA's trainer and configs, sourced by the scripts in this folder (ZjjConan/Multi-Modal-Adapter: run_examples.sh
# and scripts/mmadapter/*.sh): configs/trainers/MultiModalAdapter/vit_b16_ep5.yaml (batch 16, 5 epochs) on every
# dataset but ImageNet, vit_b16_ep5_imnet.yaml (batch 128) on ImageNet and for the cross-dataset / domain
# generalisation source (the authors name no config for those; their only ImageNet one). Load epoch 5.
TRAINER=MultiModalAdapter
CFG=vit_b16_ep5
XD_CFG=vit_b16_ep5_imnet
if [ "${1:-}" = "imagenet" ]; then CFG=vit_b16_ep5_imnet; fi
source "$(dirname "${BASH_SOURCE[0]}")/../common.sh"
