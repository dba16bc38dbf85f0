"""CoOp (Zhou et al., IJCV 2022): n_t learnable context vectors at the text input."""
from torch import nn

from .base import PromptedCLIP, context_vectors


class CoOp(PromptedCLIP):
    def __init__(self, cfg, classnames, clip_model):
        super().__init__(cfg, classnames, clip_model)
        c = cfg.TRAINER.COOP
        if c.CLASS_TOKEN_POSITION != "end":
            raise ValueError("TRAINER.COOP.CLASS_TOKEN_POSITION: only 'end' is supported "
                             f"(got {c.CLASS_TOKEN_POSITION!r})")
        ctx_init = c.CTX_INIT.replace("_", " ")
        # As CoOp: an init string fixes the context length to its number of words.
        n_ctx = len(ctx_init.split(" ")) if ctx_init else c.N_CTX
        if c.CSC and ctx_init:
            raise ValueError("TRAINER.COOP.CSC with CTX_INIT is not supported; leave CTX_INIT empty")
        shape = (len(self.classnames),) if c.CSC else ()
        self.class_specific = bool(c.CSC)
        self.prompt_learner = nn.Module()
        self.prompt_learner.ctx = nn.Parameter(
            context_vectors(self.text_encoder, ctx_init, n_ctx, shape))
        self.set_text_template(ctx_init or " ".join(["X"] * n_ctx), n_ctx)

    def text_prompts(self):
        return [self.prompt_learner.ctx]
