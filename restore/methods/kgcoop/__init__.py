"""KgCoOp (Yao et al., CVPR 2023): CoOp's context, pulled towards the hand prompts' class text features by a
knowledge-guided loss (the model: model.py).

Its keys live in TRAINER.KGCOOP. The authors' code reads CoOp's node (TRAINER.COOP.N_CTX, CSC, CTX_INIT, PREC,
CLASS_TOKEN_POSITION, W): those spellings are aliases here, applied to KgCoOp runs only, so that the authors'
yaml files and command lines work unchanged. Their `CTX_INIT: True` means the context "a photo of a" (the
code ignores the string), False a random one. The RESTORE release writes the weight as TRAINER.KGCOOP.W, our
key. docs/REPRODUCING.md section 12 lists what differs from the authors' code and from the release's copy.
"""
from ..coop import CLASS_TOKEN_POSITION, CTX_WORDS, coop_aliases
from ..registry import register
from ..spec import PREC, Alias, ConfigNode, Key, MethodSpec, OriginalLayout, lazy_model

# TRAINER.KGCOOP.TEMPLATES (and ProGrad's): whose per-dataset hand prompts (restore.templates).
TEMPLATE_TABLES = ("authors", "release")

KGCOOP = ConfigNode("TRAINER.KGCOOP", (
    Key("N_CTX", 16, "the number of learnable context tokens (without CTX_INIT)", min=1),
    Key("CSC", False, "class-specific contexts: one set of context vectors per class (without CTX_INIT)"),
    CTX_WORDS,
    PREC,
    CLASS_TOKEN_POSITION,
    Key("W", 1.0, "the weight of the knowledge-guided loss 1 - mean cos(learned, hand-prompt class text features)",
        min=0),
    Key("TEMPLATES", "authors", "the hand prompts: KgCoOp's per-dataset templates, or the RESTORE release's",
        choices=TEMPLATE_TABLES),
), aliases={**coop_aliases("TRAINER.KGCOOP", Alias("TRAINER.KGCOOP.CTX_INIT", {True: "a photo of a", False: ""})),
            "TRAINER.COOP.W": "TRAINER.KGCOOP.W"})

# The authors' checkpoints: CoOp's prompt learner plus two modules their forward never uses.
KGCOOP_LAYOUT = OriginalLayout("KgCoOp", base="CoOp", marks=("bias_vectors",),
                               unused=("bias_vectors", "meta_net."), writers="KgCoOp")

register(MethodSpec(
    "KgCoOp", model="restore.methods.kgcoop.model:KgCoOp", nodes=(KGCOOP,), registered_name="prompt_learner",
    base="CoOp", context_keys=("TRAINER.KGCOOP.N_CTX", "TRAINER.KGCOOP.CTX_INIT"),
    original_layouts=(KGCOOP_LAYOUT, "CoOp"), export_layout="KgCoOp", cost=1.05, benchmark=True,
    configs={"base2new": "vit_b16_ep100_ctxv1"},  # its authors' published configs (scripts/kgcoop)
    tiny=("TRAINER.KGCOOP.N_CTX", 3)))

__getattr__ = lazy_model(__name__, ("KgCoOp",))
