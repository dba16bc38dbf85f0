"""CoCoOp: text context conditioned on each image; checkpoints in prompt_learner/."""
from .base import PromptTrainer, register


@register
class CoCoOp(PromptTrainer):
    pass
