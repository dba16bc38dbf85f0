"""MaPLe: coupled deep vision-language prompts; checkpoints in MultiModalPromptLearner/."""
from .base import PromptTrainer, register


@register
class MaPLe(PromptTrainer):
    pass
