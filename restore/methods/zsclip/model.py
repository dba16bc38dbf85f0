"""ZeroshotCLIP: CoOp's per-dataset hand template, no learnable prompts."""
from ...templates import template_for
from ..base import PromptedCLIP


class ZeroshotCLIP(PromptedCLIP):
    def __init__(self, cfg, classnames, clip_model):
        super().__init__(cfg, classnames, clip_model)
        self.template = template_for(cfg.DATASET.NAME)
        self.set_text_template(None, 0, self.template)
