"""MaPLe (Khattak et al., CVPR 2023): deep text prompts with vision prompts coupled to them (model.py).
Its node is read by RESTORE_m and MaPLe_FSA too."""
from ..registry import register
from ..spec import PREC, ConfigNode, Key, MethodSpec, lazy_model

MAPLE = ConfigNode("TRAINER.MAPLE", (
    Key("N_CTX", 2, "the number of learnable context tokens per prompted layer", min=1),
    Key("CTX_INIT", "a photo of a", "the initial context words (used when N_CTX <= 4)"),
    PREC,
    Key("PROMPT_DEPTH", 9, "the number of layers with prompts, in both encoders", min=1, layers="both"),
))

register(MethodSpec(
    "MaPLe", model="restore.methods.maple.model:MaPLe", nodes=(MAPLE,),
    registered_name="MultiModalPromptLearner", vision_prompts=True,
    context_keys=("TRAINER.MAPLE.N_CTX", "TRAINER.MAPLE.CTX_INIT"),
    original_layouts=("MaPLe",), export_layout="MaPLe", cost=1.45, benchmark=True,
    configs={"base2new": "vit_b16_c2_ep5_batch4_2ctx", "xd": "vit_b16_c2_ep5_batch4_2ctx_cross_datasets"},
    tiny=("TRAINER.MAPLE.PROMPT_DEPTH", 2, "TRAINER.MAPLE.N_CTX", 2)))

__getattr__ = lazy_model(__name__, ("MaPLe",))
