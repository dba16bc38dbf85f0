"""PromptSRC: IVLP prompts with self-regularisation and Gaussian prompt aggregation (both in
restore.methods.promptsrc; GPA runs in the epoch-end hook); checkpoints in VLPromptLearner/."""
from .base import PromptTrainer, register


@register
class PromptSRC(PromptTrainer):
    pass
