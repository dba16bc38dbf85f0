"""Independent deep vision-language prompts (IVLP) and its one-branch special cases LPT and VPT.

Text: layer-0 context `ctx` (from CTX_INIT when N_CTX_TEXT <= 4, as the anchors) and independent
prompts for layers 1..PROMPT_DEPTH_TEXT-1. Vision: `vision_ctx` at layer 0 and independent prompts
for layers 1..PROMPT_DEPTH_VISION-1. A branch of depth 0 has no prompts; a text branch without
prompts uses the hand template "<CTX_INIT> <class>.".
"""
import torch
from torch import nn

from ..base import PromptedCLIP, check_depth, context_vectors, deep_prompts


class IVLP(PromptedCLIP):
    def prompt_config(self, cfg):
        c = cfg.TRAINER.IVLP
        return dict(node="TRAINER.IVLP", n_text=c.N_CTX_TEXT, depth_text=c.PROMPT_DEPTH_TEXT,
                    n_vision=c.N_CTX_VISION, depth_vision=c.PROMPT_DEPTH_VISION,
                    ctx_init=c.CTX_INIT)

    def __init__(self, cfg, classnames, clip_model):
        super().__init__(cfg, classnames, clip_model)
        p = self.prompt_config(cfg)
        node, ctx_init = p["node"], p["ctx_init"].replace("_", " ")
        self.depth_text, self.depth_vision = p["depth_text"], p["depth_vision"]
        if self.depth_vision > 0:
            self.require_vision_prompts()
        check_depth(f"{node}.PROMPT_DEPTH_TEXT", self.depth_text, self.text_encoder.num_layers)
        check_depth(f"{node}.PROMPT_DEPTH_VISION", self.depth_vision,
                    self.image_encoder.num_layers)
        self.prompt_learner = nn.Module()
        if self.depth_text > 0:
            n = p["n_text"]
            init = ctx_init if ctx_init and n <= 4 else ""
            self.prompt_learner.ctx = nn.Parameter(context_vectors(self.text_encoder, init, n))
            self.prompt_learner.text_deep = deep_prompts(self.depth_text - 1, n,
                                                         self.text_encoder.width)
            self.set_text_template(init or " ".join(["X"] * n), n)
        else:
            self.set_text_template(ctx_init, 0)
        if self.depth_vision > 0:
            n, width = p["n_vision"], self.image_encoder.width
            self.prompt_learner.vision_ctx = nn.Parameter(torch.empty(n, width).normal_(std=0.02))
            self.prompt_learner.vision_deep = deep_prompts(self.depth_vision - 1, n, width)

    def text_prompts(self):
        if self.depth_text == 0:
            return []
        return [self.prompt_learner.ctx, *self.prompt_learner.text_deep]

    def vision_prompts(self):
        if self.depth_vision == 0:
            return []
        return [self.prompt_learner.vision_ctx, *self.prompt_learner.vision_deep]

    def deep_prompt_pairs(self):
        """(text, vision) prompts of layers 1..min depth-1, for the release's feature-shift proxy."""
        if self.depth_text == 0 or self.depth_vision == 0:
            return []
        return list(zip(self.prompt_learner.text_deep, self.prompt_learner.vision_deep))


class LPT(IVLP):
    """Language prompt tuning: deep text prompts only."""

    def prompt_config(self, cfg):
        c = cfg.TRAINER.LPT
        return dict(node="TRAINER.LPT", n_text=c.N_CTX_TEXT, depth_text=c.PROMPT_DEPTH_TEXT,
                    n_vision=0, depth_vision=0, ctx_init=c.CTX_INIT)


class VPT(IVLP):
    """Deep vision prompt tuning with the hand text template "<CTX_INIT> <class>."."""

    def prompt_config(self, cfg):
        c = cfg.TRAINER.VPT
        if c.PROMPT_DEPTH_VISION < 1:
            raise ValueError("TRAINER.VPT.PROMPT_DEPTH_VISION must be >= 1")
        return dict(node="TRAINER.VPT", n_text=0, depth_text=0, n_vision=c.N_CTX_VISION,
                    depth_vision=c.PROMPT_DEPTH_VISION, ctx_init=c.CTX_INIT)

