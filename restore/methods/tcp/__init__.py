"""TCP (Yao, Zhang, Xu, CVPR 2024): textual-based class-aware prompt tuning: CoOp's context, class tokens made
from the frozen CLIP's class text features entering a middle text block, and KgCoOp's loss (the model:
model.py).

Its keys live in TRAINER.TCP. The authors' code reads CoOp's node (TRAINER.COOP.N_CTX, CSC, CTX_INIT, PREC,
CLASS_TOKEN_POSITION, W, ALPHA) and CoCoOp's PREC (their class-token encoder's precision): those spellings are
aliases here, applied to TCP runs only, so that the authors' yaml file and command lines work unchanged. Their
`CTX_INIT: False` is a random context, a true value the context "a photo of a" (the code ignores the string).
The insertion block and the loss weight are literals in their code (block 8, weight 8.0); here they are keys
with those defaults. docs/REPRODUCING.md section 16 lists what differs from the authors' code.
"""
from ..coop import CTX_WORDS, coop_aliases
from ..registry import register
from ..spec import PREC, Alias, ConfigNode, Key, MethodSpec, lazy_model

TCP = ConfigNode("TRAINER.TCP", (
    Key("N_CTX", 4, "the number of learnable context tokens, and of class tokens (the authors': 4)", min=1),
    Key("CSC", False, "class-specific contexts: one set of context vectors per class (without CTX_INIT)"),
    CTX_WORDS,
    PREC,
    Key("CLASS_TOKEN_POSITION", "end", "where the class name goes (the authors' code always puts it at the end)",
        choices=("end",)),
    Key("INSERT_LAYER", 8, "the text block (0-based) whose input carries the class tokens in the context slots "
                           "(the authors' hard-coded 8 of 12)", min=1, layers="text", block=True),
    Key("KG_WEIGHT", 8.0, "the weight of KgCoOp's loss 1 - mean cos(learned, hand-prompt class text features) "
                          "(the authors' literal 8.0)", min=0),
    Key("W", 1.0, "accepted and, as in the authors' code, unused (their block replaces the slots by the class "
                  "tokens: a hard-coded weight 1.0)"),
    Key("ALPHA", 1.0, "accepted and, as in the authors' code, unused"),
), aliases={**coop_aliases("TRAINER.TCP", Alias("TRAINER.TCP.CTX_INIT", {True: "a photo of a", False: ""})),
            "TRAINER.COOP.W": "TRAINER.TCP.W", "TRAINER.COOP.ALPHA": "TRAINER.TCP.ALPHA",
            # The authors' meta_net precision (fp16 unless set): ours follows the run's precision, in which
            # every learned tensor keeps fp32 master weights.
            "TRAINER.COCOOP.PREC": "TRAINER.TCP.PREC"})

register(MethodSpec(
    "TCP", model="restore.methods.tcp.model:TCP", nodes=(TCP,), registered_name="prompt_learner",
    base="CoOp", context_keys=("TRAINER.TCP.N_CTX", "TRAINER.TCP.CTX_INIT"),
    original_layouts=("CoOp",), export_layout="CoOp", cost=1.1, benchmark=True,
    configs={"base2new": "vit_b16_ep100_ctxv1"},  # its authors' published configs (scripts/tcp)
    # The authors' train.py sets 25 epochs on these two, after the command line; here before it.
    dataset_overrides={"ImageNet": {"OPTIM.MAX_EPOCH": 25}, "SUN397": {"OPTIM.MAX_EPOCH": 25}},
    tiny=("TRAINER.TCP.N_CTX", 3, "TRAINER.TCP.INSERT_LAYER", 2)))

__getattr__ = lazy_model(__name__, ("TCP",))
