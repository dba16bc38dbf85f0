"""MaPLe (Khattak et al., CVPR 2023): deep text prompts, vision prompts coupled to them.

Layer 0: text `ctx` (from CTX_INIT when N_CTX <= 4), vision `proj(ctx)`. Layers 1..J-1: text
`compound_prompts_text[i]`, vision `compound_prompt_projections[i](compound_prompts_text[i])`;
the J-1 coupling layers start as copies of one Linear(text width -> vision width), as in MaPLe.
"""
import copy

from torch import nn

from ...checks import lookup
from ..base import PromptedCLIP, check_depth, context_vectors, deep_prompts


class MaPLe(PromptedCLIP):
    # The config node of N_CTX, CTX_INIT and PROMPT_DEPTH (CoPrompt reads its own).
    node = "TRAINER.MAPLE"

    def __init__(self, cfg, classnames, clip_model):
        super().__init__(cfg, classnames, clip_model)
        self.require_vision_prompts()
        c = lookup(cfg, self.node)
        n, depth = c.N_CTX, c.PROMPT_DEPTH
        layers = min(self.text_encoder.num_layers, self.image_encoder.num_layers)
        check_depth(f"{self.node}.PROMPT_DEPTH", depth, layers, minimum=1)
        t_width, v_width = self.text_encoder.width, self.image_encoder.width
        ctx_init = c.CTX_INIT.replace("_", " ")
        init = ctx_init if ctx_init and n <= 4 else ""

        # Created in MaPLe's order (ctx, proj, deep prompts, coupling): the same random draws for
        # the same seed.
        pl = self.prompt_learner = nn.Module()
        pl.ctx = nn.Parameter(context_vectors(self.text_encoder, init, n))
        pl.proj = nn.Linear(t_width, v_width)
        pl.compound_prompts_text = deep_prompts(depth - 1, n, t_width)
        coupling = nn.Linear(t_width, v_width)
        pl.compound_prompt_projections = nn.ModuleList(
            [copy.deepcopy(coupling) for _ in range(depth - 1)])
        self.set_text_template(init or " ".join(["X"] * n), n)

    def text_prompts(self):
        pl = self.prompt_learner
        return [pl.ctx, *pl.compound_prompts_text]

    def vision_prompts(self):
        pl = self.prompt_learner
        deep = [f(p) for f, p in zip(pl.compound_prompt_projections, pl.compound_prompts_text)]
        return [pl.proj(pl.ctx), *deep]

    def deep_prompt_pairs(self):
        """(text, vision) prompts of layers 1..J-1, for the release's feature-shift proxy."""
        pl = self.prompt_learner
        return [(p, f(p)) for f, p in zip(pl.compound_prompt_projections, pl.compound_prompts_text)]
