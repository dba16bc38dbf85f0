"""IVLP: independent deep vision and language prompts; checkpoints in VLPromptLearner/.
(Module name as in the MaPLe and PromptSRC repositories.)"""
from .base import PromptTrainer, register


@register
class IVLP(PromptTrainer):
    pass
