"""CoOp: learnable text context; checkpoints in prompt_learner/ (as the original CoOp)."""
from .base import PromptTrainer, register


@register
class CoOp(PromptTrainer):
    pass
