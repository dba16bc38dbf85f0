"""VPT: deep vision prompts with a hand text template; checkpoints in prompt_learner/."""
from .base import PromptTrainer, register


@register
class VPT(PromptTrainer):
    pass
