"""Shared fixtures of the library tests, and the independent reference computations they use.

The reference (`ref` fixture) re-implements docs/METHOD.md sections 1-2 directly on the modules of an
unmodified `clip.model.CLIP`: it calls `block(x)` of `transformer.resblocks` (the block's own
forward, with its own 77-long causal mask), `ln_pre`, `ln_post`, `ln_final`, the projections, and,
for prompt-free text sequences shorter than 77, a fresh `clip.model.ResidualAttentionBlock` with a
causal mask of that length and the same weights. It never calls restore.prompting, so a test that
compares the library with it can fail.
"""
import math
import os
import sys
from types import SimpleNamespace

import pytest
import torch
import torch.nn.functional as F

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

import clip  # noqa: E402
from clip.model import ResidualAttentionBlock  # noqa: E402

import restore  # noqa: E402
from restore.methods import registry  # noqa: E402

# The test models are tiny: one intra-op thread is fastest, and on shared cores several threads
# are many times slower (measured: 3 s vs 17 s for test_prompting.py on 2 busy cores).
torch.set_num_threads(int(os.environ.get("RESTORE_TEST_THREADS", "1")))



def numbers(result):
    """A method's `loss(batch)` result with its logged values as Python floats: (loss, {name: float})."""
    loss, terms = result
    return loss, {k: float(v.detach()) for k, v in terms.items()}


def small_opts(name):
    """KEY VALUE pairs that fit method `name` to the 3-layer tiny CLIP: its spec's `tiny` (prompt depth 2
    < 3 layers, so that the last layer shows propagation past the prompt depth; vision and text prompt
    counts differing where the method allows it, so that a mix-up cannot pass)."""
    return list(registry.get(name).tiny) if name in registry.names() else []

# Class names of different token lengths (so EOT positions differ), one with an underscore.
CLASSNAMES = ["cat", "golden_retriever", "sports car"]
NEW_CLASSNAMES = ["airplane", "red apple", "tree", "bicycle"]


@pytest.fixture
def tiny():
    """Factory of the tiny random CLIP (vision width 64, text width 48, 3 + 3 layers)."""
    return restore.tiny_clip


@pytest.fixture
def clip_model():
    return restore.tiny_clip(0)


@pytest.fixture
def make_cfg():
    """make_cfg(name, *key_value_pairs): the default config, small depths, TRAINER.NAME set."""
    def make(name, *opts):
        cfg = restore.get_cfg_default()
        cfg.TRAINER.NAME = name
        cfg.merge_from_list(small_opts(name) + list(opts))
        return cfg
    return make


@pytest.fixture
def classnames():
    return list(CLASSNAMES)


@pytest.fixture
def new_classnames():
    return list(NEW_CLASSNAMES)


@pytest.fixture
def images():
    g = torch.Generator().manual_seed(1234)
    return torch.randn(2, 3, 32, 32, generator=g)


# ------------------------------------------------------------------ independent reference
def causal_mask(length):
    return torch.full((length, length), float("-inf")).triu_(1)


def causal_block(block, length):
    """A new `clip.model.ResidualAttentionBlock` with block's weights and a causal mask of
    `length`: the frozen text block run on a sequence of that length."""
    with torch.random.fork_rng(devices=[]):
        copy = ResidualAttentionBlock(block.attn.embed_dim, block.attn.num_heads,
                                      causal_mask(length))
    copy.load_state_dict(block.state_dict())
    copy.to(block.ln_1.weight.device)
    for p in copy.parameters():
        p.requires_grad_(False)
    return copy.eval()


def batched(prompt, n):
    return prompt.unsqueeze(0).expand(n, -1, -1) if prompt.dim() == 2 else prompt


def _at(prompts, layer):
    return prompts[layer] if layer < len(prompts) else None


def image_forward(clip_model, images, prompts=()):
    """Vision tower with prompts APPENDED after [CLS, patches] (layer 0 before ln_pre, deeper
    layers replacing the previous prompt outputs), calling each block as block(x)."""
    v = clip_model.visual
    b = images.shape[0]
    x = v.conv1(images)
    x = x.reshape(b, x.shape[1], -1).permute(0, 2, 1)
    x = torch.cat([v.class_embedding + torch.zeros(b, 1, x.shape[-1], device=x.device), x], 1)
    x = x + v.positional_embedding
    n_tokens = x.shape[1]
    if _at(prompts, 0) is not None:
        x = torch.cat([x, batched(prompts[0], b)], 1)
    x = v.ln_pre(x).permute(1, 0, 2)
    inputs, outputs = [], []
    for layer, block in enumerate(v.transformer.resblocks):
        if layer > 0 and _at(prompts, layer) is not None:
            x = torch.cat([x[:n_tokens], batched(prompts[layer], b).permute(1, 0, 2)], 0)
        inputs.append(x)
        x = block(x)
        outputs.append(x)
    features = v.ln_post(x[0]) @ v.proj
    return SimpleNamespace(features=features, inputs=inputs, outputs=outputs, n_tokens=n_tokens)


def text_forward(clip_model, tokens, prompts=(), n_slots=0, embeds=None):
    """Text tower with prompts written into slots 1..n_slots (layer 0 into the token embeddings
    before the positional embedding, deeper layers into the hidden states); features read at
    EOT = argmax of the token ids."""
    n = tokens.shape[0]
    x = clip_model.token_embedding(tokens) if embeds is None else embeds
    if _at(prompts, 0) is not None:
        x = x.clone()
        x[:, 1:1 + n_slots] = batched(prompts[0], n)
    x = (x + clip_model.positional_embedding).permute(1, 0, 2)
    inputs, outputs = [], []
    for layer, block in enumerate(clip_model.transformer.resblocks):
        if layer > 0 and _at(prompts, layer) is not None:
            x = x.clone()
            x[1:1 + n_slots] = batched(prompts[layer], n).permute(1, 0, 2)
        inputs.append(x)
        x = block(x)
        outputs.append(x)
    eot = tokens.argmax(dim=-1)
    x = clip_model.ln_final(x.permute(1, 0, 2))
    features = torch.stack([x[i, eot[i]] for i in range(n)]) @ clip_model.text_projection
    return SimpleNamespace(features=features, inputs=inputs, outputs=outputs, eot=eot)


def magnitude(omega, plain, norm):
    """||Omega||_F of one sample, with the scaling of FS.NORM."""
    f = torch.sqrt((omega.double() ** 2).sum())
    if norm == "relative":
        return f / torch.sqrt((plain.double() ** 2).sum())
    if norm == "rms":
        return f / math.sqrt(omega.numel())
    assert norm == "fro"
    return f


def vision_shift(clip_model, fwd, norm="relative", per_sample=False, detach_plain=False):
    """Per layer: mean over images of ||B_l(x_l)[S] - B_l(x_l[S])||, S = CLS + patches
    ([L]; [L, N] with per_sample; detach_plain: no gradient through B_l(x_l[S]))."""
    s, out = fwd.n_tokens, []
    for block, x in zip(clip_model.visual.transformer.resblocks, fwd.inputs):
        if x.shape[0] == s:
            out.append(torch.zeros(x.shape[1], dtype=torch.float64))
            continue
        y, plain = block(x)[:s], block(x[:s])
        plain = plain.detach() if detach_plain else plain
        out.append(torch.stack([magnitude(y[:, i] - plain[:, i], plain[:, i], norm)
                                for i in range(x.shape[1])]))
    out = torch.stack(out)
    return out if per_sample else out.mean(1)


def text_shift(clip_model, fwd, n_slots, norm="relative", per_sample=False, detach_plain=False):
    """Per layer: mean over texts of the shift at positions S (all but slots 1..n_slots) up to
    and including EOT; the prompt-free pass uses a causal mask of length |S| ([L]; [L, N] with
    per_sample)."""
    if n_slots == 0:
        zeros = torch.zeros(len(fwd.inputs), fwd.inputs[0].shape[1], dtype=torch.float64)
        return zeros if per_sample else zeros.mean(1)
    out = []
    for block, x in zip(clip_model.transformer.resblocks, fwd.inputs):
        keep = [0] + list(range(1 + n_slots, x.shape[0]))
        y, plain = block(x)[keep], causal_block(block, len(keep))(x[keep])
        plain = plain.detach() if detach_plain else plain
        per_text = []
        for i in range(x.shape[1]):
            valid = [j for j, pos in enumerate(keep) if pos <= int(fwd.eot[i])]
            per_text.append(magnitude(y[valid, i] - plain[valid, i], plain[valid, i], norm))
        out.append(torch.stack(per_text))
    out = torch.stack(out)
    return out if per_sample else out.mean(1)


def logits(clip_model, image_features, text_features):
    scale = clip_model.logit_scale.exp()
    return scale * F.normalize(image_features, dim=-1) @ F.normalize(text_features, dim=-1).t()


class BlockInputs:
    """Captures the input x of every block (forward pre-hooks on block.ln_1, whose input is x)."""

    def __init__(self, blocks):
        self.inputs = [[] for _ in blocks]
        self.handles = [b.ln_1.register_forward_pre_hook(self._hook(i))
                        for i, b in enumerate(blocks)]

    def _hook(self, i):
        def hook(module, args):
            self.inputs[i].append(args[0].detach().clone())
        return hook

    def remove(self):
        for h in self.handles:
            h.remove()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.remove()


def randomize_(model, std=0.5, seed=0):
    """Give every trainable tensor random values (far from init), deterministically."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for _, p in sorted(model.named_parameters()):
            if p.requires_grad:
                p.copy_(torch.randn(p.shape, generator=g) * std)
    return model


@pytest.fixture
def ref():
    return SimpleNamespace(
        causal_mask=causal_mask, causal_block=causal_block, image_forward=image_forward,
        text_forward=text_forward, vision_shift=vision_shift, text_shift=text_shift,
        magnitude=magnitude, logits=logits, BlockInputs=BlockInputs, randomize_=randomize_,
        batched=batched)
