"""Independent deep vision-language prompts (IVLP) and its one-branch special cases LPT (text only)
and VPT (vision only), as in the MaPLe and PromptSRC repositories (the models: model.py)."""
from ..registry import register
from ..spec import PREC, ConfigNode, Key, MethodSpec, lazy_model


def text_keys(n_ctx: int, depth: int) -> tuple:
    """The text branch's keys: its prompts' length and depth."""
    return (Key("N_CTX_TEXT", n_ctx, "the number of learnable text context tokens per prompted layer",
                min=1, used_if="PROMPT_DEPTH_TEXT"),
            Key("PROMPT_DEPTH_TEXT", depth, "the number of text layers with prompts", min=0, layers="text"))


def vision_keys(n_ctx: int, depth: int, min_depth: int = 0) -> tuple:
    """The vision branch's keys: its prompts' length and depth."""
    return (Key("N_CTX_VISION", n_ctx, "the number of learnable vision prompt tokens per prompted layer",
                min=1, used_if="PROMPT_DEPTH_VISION"),
            Key("PROMPT_DEPTH_VISION", depth, "the number of vision layers with prompts", min=min_depth,
                layers="vision"))


CTX_INIT = Key("CTX_INIT", "a photo of a", "the words before the class name: the initial text context "
                                           "(when N_CTX_TEXT <= 4), or the hand template without text prompts")

# Language prompt tuning: deep text prompts only (the anchors' IVLP "language_only" config).
LPT = ConfigNode("TRAINER.LPT", (CTX_INIT, PREC, *text_keys(4, 12)))
VPT = ConfigNode("TRAINER.VPT", (CTX_INIT, PREC, *vision_keys(2, 1, min_depth=1)))
IVLP = ConfigNode("TRAINER.IVLP", (CTX_INIT, PREC, *text_keys(2, 9), *vision_keys(2, 9)))

register(MethodSpec(
    "LPT", model="restore.methods.ivlp.model:LPT", nodes=(LPT,), registered_name="VLPromptLearner",
    context_keys=("TRAINER.LPT.N_CTX_TEXT", "TRAINER.LPT.CTX_INIT"),
    original_layouts=("IVLP",), export_layout="IVLP",
    configs={"base2new": "vit_b16_c2_ep5_batch4_4ctx_language_only"},
    tiny=("TRAINER.LPT.PROMPT_DEPTH_TEXT", 2)))
register(MethodSpec(
    "VPT", model="restore.methods.ivlp.model:VPT", nodes=(VPT,), registered_name="prompt_learner",
    vision_prompts=True, context_keys=("TRAINER.VPT.CTX_INIT",),
    original_layouts=("IVLP",), export_layout="IVLP",
    configs={"base2new": "vit_b16_c2_ep5_batch4_4"},
    tiny=("TRAINER.VPT.PROMPT_DEPTH_VISION", 2, "TRAINER.VPT.N_CTX_VISION", 3)))
register(MethodSpec(
    "IVLP", model="restore.methods.ivlp.model:IVLP", nodes=(IVLP,), registered_name="VLPromptLearner",
    vision_prompts=True, context_keys=("TRAINER.IVLP.N_CTX_TEXT", "TRAINER.IVLP.CTX_INIT"),
    original_layouts=("IVLP",), export_layout="IVLP",
    configs={"base2new": "vit_b16_c2_ep5_batch4_2+2ctx"}, cost=1.45, benchmark=True,
    tiny=("TRAINER.IVLP.PROMPT_DEPTH_TEXT", 2, "TRAINER.IVLP.PROMPT_DEPTH_VISION", 2,
          "TRAINER.IVLP.N_CTX_TEXT", 2, "TRAINER.IVLP.N_CTX_VISION", 3)))

__getattr__ = lazy_model(__name__, ("IVLP", "LPT", "VPT"))
