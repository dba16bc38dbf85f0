"""Class-conditioned text tokens at a middle block (TCP's class-aware prompts), for any method.

A method's `text_prompts()` is a per-layer list (restore.prompting): the entry at layer l >= 1 replaces the
context slots 1..n of the hidden state that enters text block l, and it may be one set of tokens per class
text, [C, n, W]. Class-conditioned tokens at a middle block are therefore one more entry of that list,
`with_class_tokens(prompts, layer, tokens)`: the encoder needs no code of its own for them, and a method that
does not call it runs exactly as before. The entry replaces what the method had at that layer, as TCP's code
does (its mixing weight is a hard-coded 1.0: `1.0 * tokens + 0.0 * slots`). The feature-shift trace drops
the slots in every block, so from `layer` on it measures the class tokens as the prompt (docs/METHOD.md).

`class_token_encoder` builds TCP's "textual knowledge embedding" (its `meta_net`): a two-layer MLP mapping
a class's frozen text feature [D] to n tokens of the text width, n * W values reshaped to [n, W].
"""
from collections import OrderedDict
from typing import List, Optional

import torch
from torch import Tensor, nn


def with_class_tokens(prompts: List[Optional[Tensor]], layer: int, tokens: Tensor) -> List[Optional[Tensor]]:
    """`prompts` (per-layer text prompts, index 0 = the token embeddings) with `tokens` [C, n, W], one row
    per class text in the order of the method's class texts, at block `layer` (1 <= layer < the text
    encoder's layers), replacing the entry there. A new list; `prompts` is not changed."""
    if tokens.dim() != 3:
        raise ValueError(f"class tokens must be [C, n, W], got shape {tuple(tokens.shape)}")
    if layer < 1:
        raise ValueError(f"class tokens enter a block's hidden state: layer must be >= 1, got {layer}")
    out = list(prompts) + [None] * (layer + 1 - len(prompts))
    out[layer] = tokens
    return out


class QuickGELU(nn.Module):
    """x * sigmoid(1.702 x), CLIP's activation (TCP's meta_net calls it "relu")."""

    def forward(self, x: Tensor) -> Tensor:
        return x * torch.sigmoid(1.702 * x)


def class_token_encoder(feature_dim: int, n_tokens: int, width: int) -> nn.Sequential:
    """TCP's meta_net: linear1 Linear(D, D // 4), relu QuickGELU, linear2 Linear(D // 4, n * W) (names and
    creation order as the authors', so the same draws and checkpoint keys); [C, D] -> [C, n * W]. The
    authors hard-code 4 * 512 outputs reshaped to tokens of 512 (ViT-B/16's text width): the same at n = 4,
    W = 512."""
    hidden = feature_dim // 4
    return nn.Sequential(OrderedDict([
        ("linear1", nn.Linear(feature_dim, hidden, bias=True)),
        ("relu", QuickGELU()),
        ("linear2", nn.Linear(hidden, n_tokens * width, bias=True)),
    ]))
