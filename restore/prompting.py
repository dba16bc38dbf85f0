"""The one prompted image encoder and the one prompted text encoder (METHOD.md sections 1-2).

Both walk the unmodified `transformer.resblocks` of a `clip.model.CLIP` and insert deep prompts:
- vision: prompts are APPENDED after [CLS, patches]; at each layer l >= 1 that has prompts, the
  previous layer's prompt outputs are dropped and the new ones appended; layers without new
  prompts propagate the previous ones. Layer-0 prompts go in before `ln_pre`, as in the anchors.
- text: prompts REPLACE the context slots 1..n after SOS (layer 0: in the token embeddings, before
  the positional embedding; layer l >= 1: in the hidden states). Length and EOT index unchanged;
  the blocks run positions 0..max(EOT) only (the rest cannot matter under the causal mask).

`prompts` is a sequence indexed by layer (missing or None = no new prompts at that layer); a
prompt is [n, width] (shared) or [N, n, width] (per sample). With `trace` the encoders also return
the per-layer feature shift N_l: each block is called a second time on its input without the
prompt tokens, and `shift_magnitude` compares the two outputs at the non-prompt positions. The
encoders own no parameters; they are plain callables over the CLIP's modules.
"""
from typing import Optional, Sequence, Tuple, Union

import torch
from torch import Tensor

from .feature_shift import shift_magnitude

Prompts = Sequence[Optional[Tensor]]
Trace = Union[bool, Tensor]  # False, True (all samples), or indices of the samples to trace


def run_block(block, x: Tensor) -> Tensor:
    """One `clip.model.ResidualAttentionBlock` on x [T, N, W] (LND). Same computation as
    `block(x)`, with the block's causal mask (if any) cut to the sequence length T, so that the
    block can also run on a shortened, prompt-free sequence."""
    mask = block.attn_mask
    if mask is not None:
        mask = mask[: x.shape[0], : x.shape[0]].to(dtype=x.dtype, device=x.device)
    h = block.ln_1(x)
    x = x + block.attn(h, h, h, need_weights=False, attn_mask=mask)[0]
    return x + block.mlp(block.ln_2(x))


def _layer_prompt(prompts: Prompts, layer: int) -> Optional[Tensor]:
    return prompts[layer] if layer < len(prompts) else None


def _batched(prompt: Tensor, n: int, dtype) -> Tensor:
    """[n_p, W] or [N, n_p, W] -> [N, n_p, W] in the activation dtype."""
    prompt = prompt.to(dtype)
    return prompt.unsqueeze(0).expand(n, -1, -1) if prompt.dim() == 2 else prompt


def _rows(trace: Trace, n: int, device) -> Optional[Tensor]:
    if trace is False or trace is None:
        return None
    if trace is True:
        return torch.arange(n, device=device)
    return trace.to(device)


class PromptedImageEncoder:
    """`clip.model.VisionTransformer` with deep prompts appended to the token sequence."""

    def __init__(self, visual):
        self.visual = visual
        self.blocks = list(visual.transformer.resblocks)
        self.width = visual.conv1.out_channels
        self.num_layers = len(self.blocks)
        self.output_dim = visual.output_dim

    @property
    def dtype(self):
        return self.visual.conv1.weight.dtype

    def __call__(self, images: Tensor, prompts: Prompts = (), trace: Trace = False,
                 norm: str = "relative") -> Tuple[Tensor, Optional[Tensor]]:
        """images [B, 3, H, W] -> (features [B, D], shift [L] or None)."""
        v = self.visual
        x = v.conv1(images.to(self.dtype))
        x = x.flatten(2).permute(0, 2, 1)  # [B, grid**2, W]
        cls = v.class_embedding.to(x.dtype).expand(x.shape[0], 1, -1)
        x = torch.cat([cls, x], dim=1) + v.positional_embedding.to(x.dtype)
        n_tokens = x.shape[1]  # CLS + patches: the positions S that are never prompts
        first = _layer_prompt(prompts, 0)
        if first is not None:
            x = torch.cat([x, _batched(first, x.shape[0], x.dtype)], dim=1)
        x = v.ln_pre(x).permute(1, 0, 2)  # LND

        rows = _rows(trace, x.shape[1], x.device)
        shifts = [] if rows is not None else None
        for layer, block in enumerate(self.blocks):
            new = _layer_prompt(prompts, layer) if layer > 0 else None
            if new is not None:
                new = _batched(new, x.shape[1], x.dtype).permute(1, 0, 2)
                x = torch.cat([x[:n_tokens], new], dim=0)
            y = run_block(block, x)
            if shifts is not None:
                shifts.append(self._shift(block, x, y, n_tokens, rows, norm))
            x = y
        x = v.ln_post(x[0])
        if v.proj is not None:
            x = x @ v.proj
        return x, (torch.stack(shifts) if shifts is not None else None)

    @staticmethod
    def _shift(block, x, y, n_tokens, rows, norm):
        if x.shape[0] == n_tokens:  # no prompt tokens in this block's input: no shift
            return y.new_zeros((), dtype=torch.float32)
        plain = run_block(block, x[:n_tokens, rows])
        return shift_magnitude(y[:n_tokens, rows], plain, norm)


class PromptedTextEncoder:
    """CLIP's text transformer with deep prompts replacing the context slots 1..n_slots."""

    def __init__(self, clip_model):
        self.model = clip_model
        self.blocks = list(clip_model.transformer.resblocks)
        self.width = clip_model.ln_final.weight.shape[0]
        self.num_layers = len(self.blocks)
        self.context_length = clip_model.context_length
        # CLIP's text blocks are causal: no position attends to a later one.
        self.causal = all(b.attn_mask is not None for b in self.blocks)

    @property
    def dtype(self):
        return self.model.dtype

    def tokenize(self, texts) -> Tensor:
        import clip
        return clip.tokenize(texts, context_length=self.context_length)

    @staticmethod
    def token_count(text: str) -> int:
        """Tokens `tokenize` gives `text`, SOS and EOT included (it must be <= context_length)."""
        from clip.clip import _tokenizer
        return len(_tokenizer.encode(text)) + 2

    @torch.no_grad()
    def embed(self, tokens: Tensor) -> Tensor:
        """Token ids [N, T] -> frozen token embeddings [N, T, W] (no positional embedding)."""
        return self.model.token_embedding(tokens.to(self.model.token_embedding.weight.device)).to(self.dtype)

    def __call__(self, x: Tensor, eot: Tensor, prompts: Prompts = (), n_slots: int = 0,
                 trace: Trace = False, norm: str = "relative") -> Tuple[Tensor, Optional[Tensor]]:
        """x: token embeddings [N, T, W] of the prompt template (slots 1..n_slots are
        placeholders); eot: [N] EOT positions. -> (features [N, D], shift [L] or None)."""
        m = self.model
        x = x.to(self.dtype)
        if self.causal:
            # Under the causal mask the tokens after the last EOT never reach a feature or a
            # counted shift position: drop them (exact, and most of a 77-token context).
            x = x[:, : int(eot.max()) + 1]
        first = _layer_prompt(prompts, 0)
        if first is not None:
            x = self._insert(x, _batched(first, x.shape[0], x.dtype), n_slots, dim=1)
        x = (x + m.positional_embedding[: x.shape[1]].to(x.dtype)).permute(1, 0, 2)  # LND

        rows = _rows(trace, x.shape[1], x.device)
        shifts = [] if rows is not None else None
        if shifts is not None and n_slots > 0:
            # Positions of S (all but the slots) that count: up to and including EOT.
            positions = torch.arange(x.shape[0] - n_slots, device=x.device)
            valid = positions[:, None] <= (eot.to(x.device)[rows] - n_slots)[None, :]
        for layer, block in enumerate(self.blocks):
            new = _layer_prompt(prompts, layer) if layer > 0 else None
            if new is not None:
                new = _batched(new, x.shape[1], x.dtype).permute(1, 0, 2)
                x = self._insert(x, new, n_slots, dim=0)
            y = run_block(block, x)
            if shifts is not None:
                if n_slots == 0:
                    shifts.append(y.new_zeros((), dtype=torch.float32))
                else:
                    plain = run_block(block, self._drop(x[:, rows], n_slots))
                    shifts.append(shift_magnitude(self._drop(y[:, rows], n_slots), plain, norm,
                                                  valid))
            x = y
        x = m.ln_final(x.permute(1, 0, 2))
        x = x[torch.arange(x.shape[0], device=x.device), eot.to(x.device)] @ m.text_projection
        return x, (torch.stack(shifts) if shifts is not None else None)

    @staticmethod
    def _insert(x, prompt, n_slots, dim):
        if prompt.shape[dim] != n_slots:
            raise ValueError(f"text prompt has {prompt.shape[dim]} tokens but the template has "
                             f"{n_slots} context slots")
        head, tail = x.narrow(dim, 0, 1), x.narrow(dim, 1 + n_slots, x.shape[dim] - 1 - n_slots)
        return torch.cat([head, prompt, tail], dim=dim)

    @staticmethod
    def _drop(x, n_slots):  # LND: remove the slots 1..n_slots
        return torch.cat([x[:1], x[1 + n_slots:]], dim=0)
