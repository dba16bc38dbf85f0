"""CoOp (Zhou et al., IJCV 2022): learnable context vectors at the text input (the model: model.py)."""
from ..registry import register
from ..spec import PREC, ConfigNode, Key, MethodSpec, lazy_model

CLASS_TOKEN_POSITIONS = ("end", "middle", "front")
# Keys of the CoOp lineage's nodes (CoCoOp, KgCoOp, ProGrad, TCP declare them too).
CTX_WORDS = Key("CTX_INIT", "", "initial context words (N_CTX becomes their number); empty: random vectors")
CLASS_TOKEN_POSITION = Key("CLASS_TOKEN_POSITION", "end", "where the class name goes: after, inside or before the "
                           "context", choices=CLASS_TOKEN_POSITIONS)

COOP = ConfigNode("TRAINER.COOP", (
    Key("N_CTX", 16, "the number of learnable context tokens", min=1),
    Key("CSC", False, "class-specific contexts: one set of context vectors per class"),
    CTX_WORDS,
    PREC,
    CLASS_TOKEN_POSITION,
))


def coop_aliases(node: str, ctx_init) -> dict:
    """The aliases of a node holding CoOp's context keys (KgCoOp's, ProGrad's) for the authors who spell
    them as CoOp's (TRAINER.COOP.N_CTX, ...): {alias: key of `node`}; `ctx_init` is CTX_INIT's target
    (a restore.methods.spec.Alias, which translates the authors' values)."""
    aliases = {f"TRAINER.COOP.{k}": f"{node}.{k}" for k in ("N_CTX", "CSC", "PREC", "CLASS_TOKEN_POSITION")}
    aliases["TRAINER.COOP.CTX_INIT"] = ctx_init
    return aliases


register(MethodSpec(
    "CoOp", model="restore.methods.coop.model:CoOp", nodes=(COOP,), registered_name="prompt_learner",
    context_keys=("TRAINER.COOP.N_CTX", "TRAINER.COOP.CTX_INIT"),
    original_layouts=("CoOp",), export_layout="CoOp", cost=1.0, benchmark=True,
    configs={"base2new": "vit_b16_ctxv1", "xd": "vit_b16_ep50_ctxv1", "fewshot": "vit_b16"},
    tiny=("TRAINER.COOP.N_CTX", 3)))

__getattr__ = lazy_model(__name__, ("CoOp",))
