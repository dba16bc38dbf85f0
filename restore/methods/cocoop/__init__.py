"""CoCoOp (Zhou et al., CVPR 2022): context vectors shifted per image by a meta-network (model.py)."""
from ..coop import CTX_WORDS
from ..registry import register
from ..spec import PREC, ConfigNode, Key, MethodSpec, lazy_model

COCOOP = ConfigNode("TRAINER.COCOOP", (
    Key("N_CTX", 16, "the number of learnable context tokens", min=1),
    CTX_WORDS,
    PREC,
))

register(MethodSpec(
    "CoCoOp", model="restore.methods.cocoop.model:CoCoOp", nodes=(COCOOP,), registered_name="prompt_learner",
    context_keys=("TRAINER.COCOOP.N_CTX", "TRAINER.COCOOP.CTX_INIT"),
    original_layouts=("CoOp",), export_layout="CoOp", cost=10.0, benchmark=True,
    configs={"base2new": "vit_b16_c4_ep10_batch1_ctxv1"},
    tiny=("TRAINER.COCOOP.N_CTX", 3)))

__getattr__ = lazy_model(__name__, ("CoCoOp",))
