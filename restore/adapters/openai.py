"""OpenAI CLIP (`clip.model.CLIP`): ViT towers and ResNet (ModifiedResNet) image towers.

OpenAI's blocks run sequence-first (LND), as the encoders do. The text blocks keep their causal
mask on themselves (`block.attn_mask`, built for the full context): `text_block` lends the block
the mask of the current length for the call, so that the block's own forward runs on shortened
sequences too (prompt-free trace, truncation after the last EOT).
"""
from typing import Optional

import torch
from clip.model import CLIP, ModifiedResNet, VisionTransformer
from torch import Tensor

from .base import BackboneAdapter, methods_without_vision_prompts, register_adapter


@register_adapter
class OpenAIAdapter(BackboneAdapter):
    @classmethod
    def accepts(cls, model) -> bool:
        return isinstance(model, CLIP)

    def __init__(self, model: CLIP):
        super().__init__(model)
        visual = model.visual
        self.output_dim = visual.output_dim
        self.image_resolution = visual.input_resolution
        if isinstance(visual, VisionTransformer):
            self.family = "OpenAI ViT"
            self.image_blocks = list(visual.transformer.resblocks)
            self.image_width = visual.conv1.out_channels
        elif isinstance(visual, ModifiedResNet):
            self.family = "OpenAI ResNet"
            self.vision_prompt_error = (
                "a ResNet image encoder (ModifiedResNet) has no token blocks to take vision "
                f"prompts; methods that can use it: {methods_without_vision_prompts()}")
        self.text_blocks = list(model.transformer.resblocks)
        self.text_width = model.ln_final.weight.shape[0]
        self.context_length = model.context_length
        self.causal = all(b.attn_mask is not None for b in self.text_blocks)

    @property
    def dtype(self):
        return self.model.dtype

    # ------------------------------------------------------------------------------ vision
    def embed_image(self, images, prompt=None):
        v = self.model.visual
        x = v.conv1(images.to(self.dtype))
        x = x.flatten(2).permute(0, 2, 1)  # [B, grid**2, W]
        cls = v.class_embedding.to(x.dtype).expand(x.shape[0], 1, -1)
        x = torch.cat([cls, x], dim=1) + v.positional_embedding.to(x.dtype)
        n_prefix = x.shape[1]  # CLS + patches
        if prompt is not None:  # layer-0 prompts go in before ln_pre, as in the anchors
            x = torch.cat([x, prompt], dim=1)
        return v.ln_pre(x).permute(1, 0, 2), n_prefix  # LND

    def image_block(self, index, x):
        return self.image_blocks[index](x)

    def pool_image(self, x):
        v = self.model.visual
        x = v.ln_post(x[0])
        return x @ v.proj if v.proj is not None else x

    # -------------------------------------------------------------------------------- text
    def tokenize(self, texts):
        import clip
        return clip.tokenize(texts, context_length=self.context_length)

    def token_count(self, text):
        from clip.clip import _tokenizer
        return len(_tokenizer.encode(text)) + 2

    def eot_index(self, tokens):
        return tokens.argmax(dim=-1)  # the EOT id is the largest in the vocabulary

    def token_embedding(self, tokens):
        emb = self.model.token_embedding
        return emb(tokens.to(emb.weight.device)).to(self.dtype)

    def embed_text(self, x):
        return (x + self.model.positional_embedding[: x.shape[1]].to(x.dtype)).permute(1, 0, 2)

    def causal_mask(self, length) -> Optional[Tensor]:
        mask = self.text_blocks[0].attn_mask
        return None if mask is None else mask[:length, :length]

    def text_block(self, index, x, mask):
        block = self.text_blocks[index]
        full = block.attn_mask
        block.attn_mask = mask  # the block's own forward reads (and casts) its stored mask
        try:
            return block(x)
        finally:
            block.attn_mask = full

    def pool_text(self, x, eot):
        m = self.model
        x = m.ln_final(x.permute(1, 0, 2))
        return x[torch.arange(x.shape[0], device=x.device), eot.to(x.device)] @ m.text_projection
