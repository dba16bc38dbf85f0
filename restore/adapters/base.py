"""The interface the two prompted encoders walk, whatever CLIP implementation is underneath.

An adapter wraps a frozen CLIP (OpenAI `clip`, open_clip) and exposes its towers as small steps
on sequence-first (LND: [tokens, batch, width]) activations. The encoders in `restore.prompting`
insert the prompts between these steps; the adapter hides where each library keeps its modules,
its mask, its token layout and its pooling. An adapter owns no parameters and never changes the
model (a text block lends the mask of the current length only for its call).

Vision:  embed_image(images, prompt) -> x, n_prefix;  image_block(i, x);  pool_image(x);
         image_block_norm(i) (a block's first LayerNorm, for in-block branches)
         (or, for towers without token blocks, `encode_image_plain(images)`)
Text:    token_embedding(tokens);  embed_text(x);  text_block(i, x, causal_mask(T));
         text_block_norm(i);  pool_text(x, eot);  tokenize(texts);  token_count(text);  eot_index(tokens)
"""
from typing import List, Optional, Tuple

import torch
from torch import Tensor

from ..errors import UserError


def methods_without_vision_prompts() -> str:
    """The registered methods that run on an image tower without token blocks ("resnet" among their
    spec's backbones), for messages: "ZeroshotCLIP, CoOp, CoCoOp, LPT"."""
    from ..methods import registry
    return ", ".join(registry.supporting("resnet"))


class UnsupportedBackbone(UserError):
    """An architecture cannot take a method (or any method); the message says which and why."""


class BackboneAdapter:
    """Base class. Subclasses set the attributes below and implement the steps."""

    family: str = ""  # e.g. "OpenAI ViT", for messages
    image_blocks: Optional[List] = None  # None: no token blocks (ResNet, timm): no vision prompts
    image_width: Optional[int] = None  # width of the image tokens (None without token blocks)
    image_resolution: int = 0  # input size in pixels (square)
    output_dim: int = 0  # width of the joint embedding
    text_blocks: List = ()
    text_width: int = 0
    context_length: int = 0
    causal: bool = True  # text blocks attend only to earlier positions
    # Why vision prompts cannot be used on this architecture (None: they can).
    vision_prompt_error: Optional[str] = None

    def __init__(self, model):
        self.model = model

    @classmethod
    def accepts(cls, model) -> bool:
        raise NotImplementedError

    @property
    def supports_vision_prompts(self) -> bool:
        return self.vision_prompt_error is None

    @property
    def dtype(self) -> torch.dtype:
        """The dtype of the frozen weights; activations are cast to it."""
        return next(self.model.parameters()).dtype

    # ------------------------------------------------------------------------------ vision
    def encode_image_plain(self, images: Tensor) -> Tensor:
        """images [B, 3, H, W] -> features [B, D] from the unmodified visual module."""
        return self.model.visual(images.to(self.dtype))

    def embed_image(self, images: Tensor, prompt: Optional[Tensor] = None) -> Tuple[Tensor, int]:
        """images [B, 3, H, W], layer-0 prompt [B, n, W] or None -> (tokens [n_prefix (+ n), B, W]
        ready for block 0, n_prefix = the number of non-prompt tokens; prompts go last)."""
        raise NotImplementedError

    def image_block(self, index: int, x: Tensor) -> Tensor:
        """Vision block `index` on x [T, B, W] -> [T, B, W] (the block's own forward)."""
        raise NotImplementedError

    def pool_image(self, x: Tensor) -> Tensor:
        """Tokens after the last block [T, B, W] -> image features [B, D]."""
        raise NotImplementedError

    def image_block_norm(self, index: int):
        """The first LayerNorm of vision block `index` (`ln_1`, before its attention), a module of the
        frozen model (MMA's adapters normalise the block input with it)."""
        return self.image_blocks[index].ln_1

    # -------------------------------------------------------------------------------- text
    def tokenize(self, texts) -> Tensor:
        """Texts -> token ids [N, context_length]; position 0 is the start token."""
        raise NotImplementedError

    def token_count(self, text: str) -> int:
        """Tokens of `text` with start and end tokens, untruncated (<= context_length to fit)."""
        raise NotImplementedError

    def eot_index(self, tokens: Tensor) -> Tensor:
        """Token ids [N, T] -> [N], the position whose output is pooled into the text feature."""
        raise NotImplementedError

    def token_embedding(self, tokens: Tensor) -> Tensor:
        """Token ids [N, T] -> token embeddings [N, T, W] (no positional embedding)."""
        raise NotImplementedError

    def embed_text(self, x: Tensor) -> Tensor:
        """Token embeddings [N, T, W] -> block-0 input [T, N, W]: plus the first T positional
        embeddings."""
        raise NotImplementedError

    def causal_mask(self, length: int) -> Optional[Tensor]:
        """The additive attention mask of the text blocks for `length` tokens, or None."""
        raise NotImplementedError

    def text_block(self, index: int, x: Tensor, mask: Optional[Tensor]) -> Tensor:
        """Text block `index` on x [T, N, W] with `causal_mask(T)` -> [T, N, W]."""
        raise NotImplementedError

    def text_block_norm(self, index: int):
        """The first LayerNorm of text block `index` (`ln_1`), as `image_block_norm`."""
        return self.text_blocks[index].ln_1

    def pool_text(self, x: Tensor, eot: Tensor) -> Tensor:
        """Tokens after the last block [T, N, W], eot [N] -> text features [N, D]."""
        raise NotImplementedError


ADAPTERS: List[type] = []


def register_adapter(cls):
    """Class decorator: `adapter_for` tries the registered adapters in registration order."""
    ADAPTERS.append(cls)
    return cls


def adapter_for(model) -> BackboneAdapter:
    """The adapter of a CLIP model; UnsupportedBackbone if no adapter takes it."""
    for cls in ADAPTERS:
        if cls.accepts(model):
            return cls(model)
    raise UnsupportedBackbone(
        f"No backbone adapter takes a {type(model).__module__}.{type(model).__name__}: supported "
        "are OpenAI `clip.model.CLIP` and open_clip `CLIP` / `CustomTextCLIP` models.")


def input_resolution(model) -> int:
    """The image size (pixels, square) a CLIP model takes."""
    return adapter_for(model).image_resolution
