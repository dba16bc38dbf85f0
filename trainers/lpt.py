"""LPT: deep language prompts only; checkpoints in VLPromptLearner/."""
from .base import PromptTrainer, register


@register
class LPT(PromptTrainer):
    pass
