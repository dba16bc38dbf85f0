"""PromptSRC (Khattak et al., ICCV 2023): IVLP prompts regularised towards the frozen CLIP, with
Gaussian prompt aggregation (model.py). Its node is read by RESTORE_p too."""
from ..ivlp import text_keys, vision_keys
from ..registry import register
from ..spec import PREC, ConfigNode, Key, MethodSpec, lazy_model

PROMPTSRC = ConfigNode("TRAINER.PROMPTSRC", (
    Key("CTX_INIT", "a photo of a", "the initial text context words (used when N_CTX_TEXT <= 4)"),
    PREC,
    *text_keys(4, 9),
    *vision_keys(4, 9),
    Key("TEXT_LOSS_WEIGHT", 25.0, "the weight of the L1 loss towards the frozen text features", min=0),
    Key("IMAGE_LOSS_WEIGHT", 10.0, "the weight of the L1 loss towards the frozen image features", min=0),
    Key("GPA_MEAN", 15.0, "the mean epoch of the Gaussian prompt aggregation (1-based)"),
    Key("GPA_STD", 1.0, "the standard deviation of the Gaussian prompt aggregation, in epochs", above=0),
))

register(MethodSpec(
    "PromptSRC", model="restore.methods.promptsrc.model:PromptSRC", nodes=(PROMPTSRC,),
    registered_name="VLPromptLearner", vision_prompts=True,
    context_keys=("TRAINER.PROMPTSRC.N_CTX_TEXT", "TRAINER.PROMPTSRC.CTX_INIT"),
    original_layouts=("IVLP",), export_layout="IVLP", cost=1.75, benchmark=True,
    loss_keys={"scl_text": "TRAINER.PROMPTSRC.TEXT_LOSS_WEIGHT",
               "scl_image": "TRAINER.PROMPTSRC.IMAGE_LOSS_WEIGHT"},
    configs={"base2new": "vit_b16_c2_ep20_batch4_4+4ctx", "xd": "vit_b16_c2_ep20_batch4_4+4ctx_cross_datasets",
             "fewshot": "vit_b16_c2_ep50_batch4_4+4ctx_few_shot"},
    tiny=("TRAINER.PROMPTSRC.PROMPT_DEPTH_TEXT", 2, "TRAINER.PROMPTSRC.PROMPT_DEPTH_VISION", 2,
          "TRAINER.PROMPTSRC.N_CTX_VISION", 3)))

__getattr__ = lazy_model(__name__, ("PromptSRC", "gpa_weights"))
