"""ZeroshotCLIP: CLIP with CoOp's per-dataset hand template; nothing to train (eval-only)."""
from .base import PromptTrainer, register


@register
class ZeroshotCLIP(PromptTrainer):
    pass
