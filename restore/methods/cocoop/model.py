"""CoCoOp (Zhou et al., CVPR 2022): context vectors shifted per image by a meta-network."""
from collections import OrderedDict
from contextlib import nullcontext

import torch.nn.functional as F
from torch import nn

from ...feature_shift import estimate
from ..base import Encoded, PromptedCLIP, context_vectors


class CoCoOp(PromptedCLIP):
    def __init__(self, cfg, classnames, clip_model):
        super().__init__(cfg, classnames, clip_model)
        c = cfg.TRAINER.COCOOP
        ctx_init = c.CTX_INIT.replace("_", " ")
        n_ctx = len(ctx_init.split(" ")) if ctx_init else c.N_CTX
        vis_dim, ctx_dim = self.image_encoder.output_dim, self.text_encoder.width
        self.prompt_learner = nn.Module()
        self.prompt_learner.ctx = nn.Parameter(context_vectors(self.text_encoder, ctx_init, n_ctx))
        self.prompt_learner.meta_net = nn.Sequential(OrderedDict([
            ("linear1", nn.Linear(vis_dim, vis_dim // 16)),
            ("relu", nn.ReLU(inplace=True)),
            ("linear2", nn.Linear(vis_dim // 16, ctx_dim)),
        ]))
        self.set_text_template(ctx_init or " ".join(["X"] * n_ctx), n_ctx)

    def encode_text(self, trace=False, image_features=None):
        """Per image, the class prompts with ctx + meta_net(image feature): [B, C, D]."""
        b, c = image_features.shape[0], self.token_embeds.shape[0]
        bias = self.prompt_learner.meta_net(F.normalize(image_features.float(), dim=-1))
        ctx = self.prompt_learner.ctx.unsqueeze(0) + bias.unsqueeze(1)  # [B, n, W]
        ctx = ctx.repeat_interleave(c, dim=0)  # [B*C, n, W], image-major
        x = self.token_embeds.repeat(b, 1, 1)
        features, samples = self.text_encoder(x, self.eot.repeat(b), [ctx], self.n_slots, trace,
                                              self.fs_norm, length=self.text_length(),
                                              branches=self.text_branches())
        shift = estimate(samples, trace, b * c) if trace is not False else None
        return features.view(b, c, -1), shift

    def encode(self, images, trace=False):
        image, vision_shift = self.encode_image(images, trace is not False)
        text, text_shift = self.encode_text(trace, image_features=image)
        return Encoded(image, text, self.feature_shift_of(vision_shift, text_shift))

    def cached_text_features(self):
        # Prompts depend on each image: nothing can be encoded once.
        return nullcontext()
