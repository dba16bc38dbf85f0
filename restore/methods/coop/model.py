"""CoOp (Zhou et al., IJCV 2022): n_t learnable context vectors at the text input.

CLASS_TOKEN_POSITION places the class name after the context ("end": "X X X X <class>."), in
its middle ("middle": half the context, the name, the other half) or before it ("front"), as
CoOp's PromptLearner does. With "end" the context fills the template's slots 1..n and goes
through the prompted text encoder like every other text prompt; with "middle" and "front" the
context sits at class-dependent positions, so CoOp assembles each class's input sequence itself
and the feature-shift trace (defined for the slots 1..n) reports no text shift (zeros).
"""
import torch
from torch import nn

from ...checks import lookup
from ...feature_shift import estimate
from ..base import PromptedCLIP, context_vectors
from . import CLASS_TOKEN_POSITIONS


class CoOp(PromptedCLIP):
    # The config node of its context keys (N_CTX, CSC, CTX_INIT, CLASS_TOKEN_POSITION): KgCoOp and
    # ProGrad, CoOp with other losses, read their own.
    node = "TRAINER.COOP"

    def __init__(self, cfg, classnames, clip_model):
        super().__init__(cfg, classnames, clip_model)
        c = lookup(cfg, self.node)
        if c.CLASS_TOKEN_POSITION not in CLASS_TOKEN_POSITIONS:
            raise ValueError(f"{self.node}.CLASS_TOKEN_POSITION must be one of "
                             f"{CLASS_TOKEN_POSITIONS} (got {c.CLASS_TOKEN_POSITION!r})")
        self.class_token_position = c.CLASS_TOKEN_POSITION
        if c.CSC and c.CTX_INIT:
            raise ValueError(f"{self.node}.CSC with CTX_INIT is not supported (class-specific contexts start "
                             "random); leave CTX_INIT empty")
        shape = (len(self.classnames),) if c.CSC else ()
        self.class_specific = bool(c.CSC)
        self.prompt_learner = nn.Module()
        ctx, prefix = self.initial_context(c, shape)
        self.prompt_learner.ctx = nn.Parameter(ctx)
        self.set_text_template(prefix, ctx.shape[-2], self.class_template())
        # Tokens of each class name (between SOS and EOT), for "middle" and "front".
        names = self.text_encoder.tokenize(self.classnames)
        self.name_lens = (self.text_encoder.eot_index(names) - 1).tolist()

    def initial_context(self, c, shape):
        """(the initial context vectors [*shape, n, width], the prompt text their n slots stand for) from
        the node `c`: as CoOp, the token embeddings of CTX_INIT's words (an init string fixes the context
        length to its number of words) or N_CTX random vectors "X X ... X"."""
        ctx_init = c.CTX_INIT.replace("_", " ")
        n_ctx = len(ctx_init.split(" ")) if ctx_init else c.N_CTX
        vectors = context_vectors(self.text_encoder, ctx_init, n_ctx, shape)
        return vectors, ctx_init or " ".join(["X"] * n_ctx)

    def class_template(self) -> str:
        """What follows the context in every class prompt: "{}." (the class name and a period)."""
        return "{}."

    def text_prompts(self):
        return [self.prompt_learner.ctx]

    def encode_text(self, trace=False):
        if self.class_token_position == "end":
            return super().encode_text(trace)
        x = self.arrange_prompts(self.prompt_learner.ctx)
        features, samples = self.text_encoder(x, self.eot, (), 0, trace, self.fs_norm,
                                              length=self.text_length(), branches=self.text_branches())
        return features, (estimate(samples, trace, x.shape[0]) if trace is not False else None)

    def arrange_prompts(self, ctx):
        """[SOS, <ctx half 1>, <name>, <ctx half 2>, ". EOT ..."] ("middle") or
        [SOS, <name>, <ctx>, ". EOT ..."] ("front") per class: [C, T, W] token embeddings."""
        te = self.token_embeds
        n, n_cls = self.n_slots, te.shape[0]
        ctx = ctx.to(te.dtype)
        ctx = ctx.unsqueeze(0).expand(n_cls, -1, -1) if ctx.dim() == 2 else ctx
        half = n // 2 if self.class_token_position == "middle" else 0
        rows = []
        for i, name_len in enumerate(self.name_lens):
            suffix = te[i, 1 + n:]  # <name> ". EOT ..." (the template after the slots)
            rows.append(torch.cat([te[i, :1], ctx[i, :half], suffix[:name_len], ctx[i, half:],
                                   suffix[name_len:]]))
        return torch.stack(rows)
