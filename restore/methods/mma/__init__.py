"""MMA, the multi-modal adapter (Yang et al., CVPR 2024; ZjjConan/Multi-Modal-Adapter): adapters inside the
upper blocks of both towers of a frozen CLIP, coupled through a projection each layer shares between the
towers; no prompts (the model: model.py).

Its keys are the authors' (TRAINER.MMADAPTER), with the defaults of their train.py; their yaml files set
START 5, SCALE 0.001. ADAPTER_START/END are the authors' 1-based block indices (END inclusive; 0 adapts the
embeddings: the vision tokens after `ln_pre`, the text token embeddings). Checkpoints are registered as
"adapter_learner" with the authors' key names (`text_adapter.<k>.down.0.weight` ...), so that their files
load here and ours there unchanged but for the class buffers they also save. docs/REPRODUCING.md section
"MMA" lists what differs from the authors' code.
"""
from ..registry import register
from ..spec import PRECISIONS, ConfigNode, Key, MethodSpec, OriginalLayout, lazy_model

MMADAPTER = ConfigNode("TRAINER.MMADAPTER", (
    Key("TEXT_CTX_INIT", "", "the fixed words before the class name (\"a photo of a\")"),
    Key("PREC", "amp", "the precision on CUDA: fp16 weights, fp32, amp or bf16 autocast (fp32 on a CPU)",
        choices=PRECISIONS, evaluation=True),
    Key("ADAPTER_START", 4, "the first adapted block (1-based; 0: the embeddings too)", min=0, layers="both"),
    Key("ADAPTER_END", 12, "the last adapted block (1-based, inclusive)", min=1, layers="both"),
    Key("ADAPTER_DIM", 32, "the adapters' bottleneck width (the shared projection's width)", min=1),
    Key("ADAPTER_SCALE", 0.1, "the factor s on the adapters' outputs, 1/s on their gradients",
        above=0),
))

# The authors' checkpoints: our key names, plus the class-dependent prompt buffers, rebuilt for each run.
MMA_LAYOUT = OriginalLayout("MMA", base="MaPLe", marks=("tokenized_prompts",),
                            unused=("token_embedding", "tokenized_prompts"), writers="MultiModalAdapter (MMA)")

# The authors run ImageNet from vit_b16_ep5_imnet, which differs from vit_b16_ep5 in the batch only: as a
# dataset override every run on ImageNet (the benchmark's, a script's) gets it, the command line still wins.
DATASET_OVERRIDES = {"ImageNet": {"DATALOADER.TRAIN_X.BATCH_SIZE": 128}}

register(MethodSpec(
    "MultiModalAdapter", model="restore.methods.mma.model:MultiModalAdapter", nodes=(MMADAPTER,),
    registered_name="adapter_learner", backbones=("vit",), context_keys=("TRAINER.MMADAPTER.TEXT_CTX_INIT",),
    original_layouts=(MMA_LAYOUT,), export_layout="MMA", cost=1.5, benchmark=True,
    configs={"base2new": "vit_b16_ep5", "xd": "vit_b16_ep5_imnet"},  # its authors' published configs (scripts/mma)
    dataset_overrides=DATASET_OVERRIDES,
    tiny=("TRAINER.MMADAPTER.ADAPTER_START", 2, "TRAINER.MMADAPTER.ADAPTER_END", 3)))

__getattr__ = lazy_model(__name__, ("MultiModalAdapter",))
