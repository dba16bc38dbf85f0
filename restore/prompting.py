"""The one prompted image encoder and the one prompted text encoder (docs/METHOD.md sections 1-2).

Both walk the unmodified blocks of a frozen CLIP through its backbone adapter (`restore.adapters`)
and insert deep prompts. Between the blocks the encoders work sequence-first (LND), the layout in
which OpenAI's blocks run and in which the methods' numbers were first computed (a batch-first
adapter transposes at its block calls). Prompts:
- vision: prompts are APPENDED after [CLS, patches]; at each layer l >= 1 that has prompts, the
  previous layer's prompt outputs are dropped and the new ones appended; layers without new
  prompts propagate the previous ones. Layer-0 prompts go in before `ln_pre`, as in the anchors.
  A tower without token blocks (ResNet) runs unmodified and takes no prompts.
- text: prompts REPLACE the context slots 1..n after SOS (layer 0: in the token embeddings, before
  the positional embedding; layer l >= 1: in the hidden states). Length and EOT index unchanged;
  the blocks run positions 0..max(EOT) only (the rest cannot matter under the causal mask).

`prompts` is a sequence indexed by layer (missing or None = no new prompts at that layer); a
prompt is [n, width] (shared) or [N, n, width] (per sample). `branches` (a `Branches`, or None)
adds a method's own computation inside a tower (MMA's adapters): `stem(x)` is added to the tokens
before block 0, `blocks[l](x)` to block l's output, computed from block l's input; nothing is
computed where they are None. With `trace` the encoders also return the feature shift of each
traced sample at each block, [L, k]: each block is called a second time on its input without the
prompt tokens (the prompt-free pass), and `shift_per_sample` compares the two outputs at the
non-prompt positions; a block with a branch and no prompt tokens compares its output with and
without the branch (one block call). `prompt_free` says how the prompt-free pass takes part in
the backward pass (`_prompt_free`; docs/METHOD.md section 3). The encoders own no parameters; they
are plain callables over the CLIP's modules.
"""
from functools import partial
from typing import Callable, NamedTuple, Optional, Sequence, Tuple, Union

import torch
from torch import Tensor
from torch.utils.checkpoint import checkpoint

from .adapters import BackboneAdapter, UnsupportedBackbone, adapter_for
from .feature_shift import shift_per_sample
from .methods.restore import PROMPT_FREE  # the choices of TRAINER.RESTORE.FS.PROMPT_FREE

Prompts = Sequence[Optional[Tensor]]
Trace = Union[bool, Tensor]  # False, True (all samples), or indices of the samples to trace
Branch = Callable[[Tensor], Tensor]  # LND tokens [T, N, W] (text stem: [N, T, W]) -> the same shape


class Branches(NamedTuple):
    """What a method adds inside one tower besides prompts (MMA's adapters), each a `Branch` or None:
    stem       added to the tokens before block 0: vision after `ln_pre` (prompts included), text to
               the token embeddings before the positional embedding.
    blocks[l]  added to block l's output, computed from block l's input x: block(x) + blocks[l](x).
    A branch may use the block's own modules through the backbone adapter (`image_block_norm`)."""
    stem: Optional[Branch] = None
    blocks: Sequence[Optional[Branch]] = ()


def _layer_prompt(prompts: Prompts, layer: int) -> Optional[Tensor]:
    return prompts[layer] if layer < len(prompts) else None


def _block(block, x: Tensor, branches: Optional[Branches], layer: int, *args):
    """(block output, the output without the branch or None): block(x) + branches.blocks[layer](x)."""
    y = block(layer, x, *args)
    branch = _layer_prompt(branches.blocks, layer) if branches is not None else None
    if branch is None:
        return y, None
    return y + branch(x), y


def _batched(prompt: Tensor, n: int, dtype) -> Tensor:
    """[n_p, W] or [N, n_p, W] -> [N, n_p, W] in the activation dtype."""
    prompt = prompt.to(dtype)
    return prompt.unsqueeze(0).expand(n, -1, -1) if prompt.dim() == 2 else prompt


def _rows(trace: Trace, device):
    """The traced samples as an index: None (no trace), a slice (all: a view, no copy), or indices."""
    if trace is False or trace is None:
        return None
    if trace is True:
        return slice(None)
    return trace.to(device)


def _prompt_free(block, x: Tensor, mode: str, *args) -> Tensor:
    """block(x, *args), the prompt-free pass. mode "grad": with gradient, as any block call;
    "recompute": the same values and gradients, but its activations are recomputed in the backward
    pass instead of kept (torch.utils.checkpoint); "no_grad": without gradient (x detached)."""
    if mode == "grad" or not torch.is_grad_enabled():
        return block(x, *args)
    if mode == "recompute":
        return checkpoint(block, x, *args, use_reentrant=False)
    if mode == "no_grad":
        with torch.no_grad():
            return block(x.detach(), *args)
    raise ValueError(f"TRAINER.RESTORE.FS.PROMPT_FREE must be one of {PROMPT_FREE}, got {mode!r}")


def _adapter(model) -> BackboneAdapter:
    return model if isinstance(model, BackboneAdapter) else adapter_for(model)


class PromptedImageEncoder:
    """The image tower with deep prompts appended to the token sequence."""

    def __init__(self, backbone):
        """backbone: a CLIP model or its `BackboneAdapter`."""
        self.backbone = _adapter(backbone)
        self.blocks = self.backbone.image_blocks
        self.width = self.backbone.image_width
        self.num_layers = len(self.blocks) if self.blocks is not None else 0
        self.output_dim = self.backbone.output_dim

    @property
    def dtype(self):
        return self.backbone.dtype

    def __call__(self, images: Tensor, prompts: Prompts = (), trace: Trace = False,
                 norm: str = "relative", prompt_free: str = "grad",
                 branches: Optional[Branches] = None) -> Tuple[Tensor, Optional[Tensor]]:
        """images [B, 3, H, W] -> (features [B, D], shift [L, k] per traced image, or None)."""
        bb = self.backbone
        if self.blocks is None:  # no token blocks: the unmodified tower, no vision shift
            if any(p is not None for p in prompts) or branches is not None:
                raise UnsupportedBackbone(f"{bb.family}: {bb.vision_prompt_error}")
            shift = images.new_zeros(0, 0, dtype=torch.float32) if trace is not False else None
            return bb.encode_image_plain(images), shift
        first = _layer_prompt(prompts, 0)
        if first is not None:
            first = _batched(first, images.shape[0], self.dtype)
        x, n_tokens = bb.embed_image(images, first)  # LND; positions :n_tokens are never prompts
        if branches is not None and branches.stem is not None:
            x = x + branches.stem(x)

        rows = _rows(trace, x.device)
        shifts = [] if rows is not None else None
        for layer in range(self.num_layers):
            new = _layer_prompt(prompts, layer) if layer > 0 else None
            if new is not None:
                new = _batched(new, x.shape[1], x.dtype).permute(1, 0, 2)
                x = torch.cat([x[:n_tokens], new], dim=0)
            y, unbranched = _block(bb.image_block, x, branches, layer)
            if shifts is not None:
                shifts.append(self._shift(layer, x, y, n_tokens, rows, norm, prompt_free, unbranched))
            x = y
        return bb.pool_image(x), (torch.stack(shifts) if shifts is not None else None)

    def _shift(self, layer, x, y, n_tokens, rows, norm, prompt_free, unbranched=None):
        prompted = y[:n_tokens, rows]
        if x.shape[0] == n_tokens:  # no prompt tokens in this block's input
            if unbranched is not None:  # the block without its branch
                return shift_per_sample(prompted, unbranched[:n_tokens, rows], norm)
            return prompted.new_zeros(prompted.shape[1], dtype=torch.float32)
        # Contiguous, as an index gather would give: the block's kernels (and the norm's reduction
        # order) then see the same layout whether all samples or a subset are traced.
        prompted = prompted.contiguous()
        plain = _prompt_free(partial(self.backbone.image_block, layer),
                             x[:n_tokens, rows].contiguous(), prompt_free)
        return shift_per_sample(prompted, plain, norm)


class PromptedTextEncoder:
    """The text tower with deep prompts replacing the context slots 1..n_slots."""

    def __init__(self, backbone):
        """backbone: a CLIP model or its `BackboneAdapter`."""
        self.backbone = _adapter(backbone)
        self.blocks = self.backbone.text_blocks
        self.width = self.backbone.text_width
        self.num_layers = len(self.blocks)
        self.context_length = self.backbone.context_length
        # CLIP's text blocks are causal: no position attends to a later one.
        self.causal = self.backbone.causal

    @property
    def dtype(self):
        return self.backbone.dtype

    def tokenize(self, texts) -> Tensor:
        return self.backbone.tokenize(texts)

    def eot_index(self, tokens: Tensor) -> Tensor:
        """Token ids [N, T] -> [N], the pooled (EOT) position of each text."""
        return self.backbone.eot_index(tokens)

    def token_count(self, text: str) -> int:
        """Tokens `tokenize` gives `text`, SOS and EOT included (it must be <= context_length)."""
        return self.backbone.token_count(text)

    @torch.no_grad()
    def embed(self, tokens: Tensor) -> Tensor:
        """Token ids [N, T] -> frozen token embeddings [N, T, W] (no positional embedding)."""
        return self.backbone.token_embedding(tokens)

    def __call__(self, x: Tensor, eot: Tensor, prompts: Prompts = (), n_slots: int = 0,
                 trace: Trace = False, norm: str = "relative", prompt_free: str = "grad",
                 length: Optional[int] = None,
                 branches: Optional[Branches] = None) -> Tuple[Tensor, Optional[Tensor]]:
        """x: token embeddings [N, T, W] of the prompt template (slots 1..n_slots are
        placeholders); eot: [N] pooled (EOT) positions; length: max(eot) + 1 when the caller knows it
        on the host (else it is read from `eot`: a host sync, which a training step avoids).
        -> (features [N, D], shift [L, k] per traced text, or None)."""
        bb = self.backbone
        x = x.to(self.dtype)
        if self.causal:
            # Under the causal mask the tokens after the last EOT never reach a feature or a
            # counted shift position: drop them (exact, and most of a 77-token context).
            x = x[:, : int(eot.max()) + 1 if length is None else length]
        first = _layer_prompt(prompts, 0)
        if first is not None:
            x = self._insert(x, _batched(first, x.shape[0], x.dtype), n_slots, dim=1)
        if branches is not None and branches.stem is not None:
            x = x + branches.stem(x)
        x = bb.embed_text(x)  # LND
        mask = bb.causal_mask(x.shape[0])

        rows = _rows(trace, x.device)
        shifts = [] if rows is not None else None
        traced = eot.to(x.device)[rows] if rows is not None else None
        if shifts is not None and n_slots > 0:
            # Positions of S (all but the slots) that count: up to and including EOT.
            positions = torch.arange(x.shape[0] - n_slots, device=x.device)
            valid = positions[:, None] <= (traced - n_slots)[None, :]
            plain_mask = bb.causal_mask(x.shape[0] - n_slots)
        elif shifts is not None and branches is not None:  # every position up to and including EOT
            valid = torch.arange(x.shape[0], device=x.device)[:, None] <= traced[None, :]
        for layer in range(self.num_layers):
            new = _layer_prompt(prompts, layer) if layer > 0 else None
            if new is not None:
                new = _batched(new, x.shape[1], x.dtype).permute(1, 0, 2)
                x = self._insert(x, new, n_slots, dim=0)
            y, unbranched = _block(bb.text_block, x, branches, layer, mask)
            if shifts is not None:
                if n_slots == 0 and unbranched is not None:  # the block without its branch
                    shifts.append(shift_per_sample(y[:, rows], unbranched[:, rows], norm, valid))
                elif n_slots == 0:
                    shifts.append(y.new_zeros(traced.shape[0], dtype=torch.float32))
                else:
                    plain = _prompt_free(partial(bb.text_block, layer),
                                         self._drop(x[:, rows], n_slots), prompt_free, plain_mask)
                    shifts.append(shift_per_sample(self._drop(y[:, rows], n_slots), plain, norm,
                                                   valid))
            x = y
        return bb.pool_text(x, eot), (torch.stack(shifts) if shifts is not None else None)

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
