"""restore.prompting and restore.feature_shift against computations written here on the clip
modules (see conftest: `ref`)."""
import math

import clip
import pytest
import torch

from restore.feature_shift import (FeatureShift, consistency_loss, discrepancy, shift_magnitude)
from restore.adapters import adapter_for
from restore.prompting import PromptedImageEncoder, PromptedTextEncoder

TEXTS = ["a photo of a cat.", "x", "a much longer sentence about a golden retriever on grass."]


def _gen(seed):
    return torch.Generator().manual_seed(seed)


def _vision_prompts(n, width, layers, shared, batch, seed=0):
    g = _gen(seed)
    shape = (n, width) if shared else (batch, n, width)
    return [None if p is None else torch.randn(shape, generator=g) for p in layers]


# ------------------------------------------------------------------ without prompts
def test_unprompted_image_encoder_equals_encode_image(clip_model, images, ref):
    enc = PromptedImageEncoder(clip_model)
    with torch.no_grad():
        ours, shift = enc(images)
        expected = clip_model.encode_image(images)
        by_hand = ref.image_forward(clip_model, images).features
    assert shift is None
    assert ours.shape == expected.shape == (2, 32)
    torch.testing.assert_close(ours, expected, atol=1e-6, rtol=0)
    torch.testing.assert_close(by_hand, expected, atol=1e-6, rtol=0)  # the reference itself


def test_unprompted_text_encoder_equals_encode_text(clip_model, ref):
    enc = PromptedTextEncoder(clip_model)
    tokens = clip.tokenize(TEXTS)
    assert len(set(tokens.argmax(-1).tolist())) == 3  # three different EOT positions
    with torch.no_grad():
        ours, shift = enc(clip_model.token_embedding(tokens), tokens.argmax(-1))
        expected = clip_model.encode_text(tokens)
        by_hand = ref.text_forward(clip_model, tokens).features
    assert shift is None
    assert ours.shape == expected.shape == (3, 32)
    # ours runs the shorter sequence (up to the last EOT): same values, other rounding
    torch.testing.assert_close(ours, expected, atol=1e-5, rtol=0)
    torch.testing.assert_close(by_hand, expected, atol=1e-6, rtol=0)
    # the EOT index matters: reading another position gives other features
    wrong, _ = enc(clip_model.token_embedding(tokens), tokens.argmax(-1) - 1)
    assert not torch.allclose(wrong, expected, atol=1e-3)


def test_text_encoder_runs_only_up_to_the_last_eot(clip_model):
    """Causal attention: the tokens after the last EOT cannot change any feature, so the encoder
    drops them; garbage there changes nothing and the blocks see max(EOT) + 1 positions."""
    enc = PromptedTextEncoder(clip_model)
    tokens = clip.tokenize(TEXTS)
    eot = tokens.argmax(-1)
    lengths = []
    hook = clip_model.transformer.resblocks[0].ln_1.register_forward_hook(
        lambda module, args, out: lengths.append(args[0].shape[0]))
    with torch.no_grad():
        x = clip_model.token_embedding(tokens)
        clean, _ = enc(x, eot)
        x[:, int(eot.max()) + 1:] = torch.randn(3, x.shape[1] - int(eot.max()) - 1, x.shape[2])
        noisy, _ = enc(x, eot)
    hook.remove()
    assert enc.causal and lengths == [int(eot.max()) + 1] * 2
    assert torch.equal(clean, noisy)


def test_encoder_tokenize_and_embed(clip_model):
    enc = PromptedTextEncoder(clip_model)
    tokens = enc.tokenize(TEXTS)
    assert torch.equal(tokens, clip.tokenize(TEXTS, context_length=77))
    emb = enc.embed(tokens)
    assert not emb.requires_grad
    torch.testing.assert_close(emb, clip_model.token_embedding.weight[tokens], atol=0, rtol=0)
    assert (enc.width, enc.num_layers, enc.context_length) == (48, 3, 77)
    venc = PromptedImageEncoder(clip_model)
    assert (venc.width, venc.num_layers, venc.output_dim) == (64, 3, 32)


def test_adapter_blocks_equal_block_forward(clip_model):
    bb = adapter_for(clip_model)
    g = _gen(1)
    x = torch.randn(17 + 3, 2, 64, generator=g)
    torch.testing.assert_close(bb.image_block(1, x), clip_model.visual.transformer.resblocks[1](x),
                               atol=1e-6, rtol=0)
    tblock = clip_model.transformer.resblocks[2]
    full_mask = tblock.attn_mask
    assert full_mask is not None and full_mask.shape == (77, 77)
    x = torch.randn(77, 3, 48, generator=g)
    torch.testing.assert_close(bb.text_block(2, x, bb.causal_mask(77)), tblock(x), atol=1e-6,
                               rtol=0)
    bb.text_block(2, x[:5], bb.causal_mask(5))
    assert tblock.attn_mask is full_mask  # the block's own mask is given back after the call


def test_adapter_short_text_uses_cut_causal_mask(clip_model, ref):
    bb = adapter_for(clip_model)
    block = clip_model.transformer.resblocks[0]
    x = torch.randn(70, 2, 48, generator=_gen(2))
    ours = bb.text_block(0, x, bb.causal_mask(70))
    torch.testing.assert_close(ours, ref.causal_block(block, 70)(x), atol=1e-6, rtol=0)
    # causal: a token never sees later ones, so the prefix equals the full-length run's prefix
    full = block(torch.cat([x, torch.randn(7, 2, 48, generator=_gen(3))]))
    torch.testing.assert_close(ours, full[:70], atol=1e-6, rtol=0)
    # and the mask matters (a mask-free block gives something else)
    free = ref.causal_block(block, 70)
    free.attn_mask = None
    assert not torch.allclose(free(x), ours, atol=1e-3)


# ------------------------------------------------------------------ prompt layouts
@pytest.mark.parametrize("shared", [True, False], ids=["shared", "per_sample"])
@pytest.mark.parametrize("layers", [(1, 1), (1, 1, 1), (None, 1), (1,), (1, None, 1)],
                         ids=["depth2", "depth3", "deep_only", "depth1", "gap"])
def test_vision_prompt_layout(clip_model, images, ref, shared, layers):
    """Prompts appended after [CLS, patches]; at each prompted layer >= 1 the previous prompt
    outputs are dropped and the new ones appended; unprompted layers propagate them."""
    n, b = 3, images.shape[0]
    prompts = _vision_prompts(n, 64, layers, shared, b)
    enc = PromptedImageEncoder(clip_model)
    blocks = list(clip_model.visual.transformer.resblocks)
    with torch.no_grad(), ref.BlockInputs(blocks) as cap:
        feats, _ = enc(images, prompts)
    with torch.no_grad():
        expected = ref.image_forward(clip_model, images, prompts)
    xs = [c[0] for c in cap.inputs]
    assert all(len(c) == 1 for c in cap.inputs)
    s = 1 + (32 // 8) ** 2  # CLS + 16 patches
    first = prompts[0] is not None
    v = clip_model.visual
    with torch.no_grad():
        for layer, x in enumerate(xs):
            prompted_so_far = first or any(p is not None for p in prompts[1:layer + 1])
            assert x.shape == ((s + n) if prompted_so_far else s, b, 64)
            torch.testing.assert_close(x, expected.inputs[layer], atol=1e-5, rtol=1e-5)
            if layer == 0:
                plain = v.conv1(images).flatten(2).permute(0, 2, 1)
                plain = torch.cat([v.class_embedding.expand(b, 1, 64), plain], 1)
                plain = plain + v.positional_embedding
                torch.testing.assert_close(x[:s], v.ln_pre(plain).permute(1, 0, 2), atol=1e-5,
                                           rtol=1e-5)
                if first:  # prompts pass ln_pre without a positional embedding
                    p0 = ref.batched(prompts[0], b)
                    torch.testing.assert_close(x[s:], v.ln_pre(p0).permute(1, 0, 2),
                                               atol=1e-5, rtol=1e-5)
                continue
            prev = blocks[layer - 1](xs[layer - 1])
            torch.testing.assert_close(x[:s], prev[:s], atol=1e-5, rtol=1e-5)
            p = prompts[layer] if layer < len(prompts) else None
            if p is not None:
                torch.testing.assert_close(x[s:], ref.batched(p, b).permute(1, 0, 2),
                                           atol=0, rtol=0)
            elif prompted_so_far:
                torch.testing.assert_close(x[s:], prev[s:], atol=1e-5, rtol=1e-5)
        last = blocks[-1](xs[-1])
        torch.testing.assert_close(feats, v.ln_post(last[0]) @ v.proj, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(feats, expected.features, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("shared", [True, False], ids=["shared", "per_sample"])
@pytest.mark.parametrize("layers", [(1, 1), (1, 1, 1), (1,), (1, None, 1)],
                         ids=["depth2", "depth3", "depth1", "gap"])
def test_text_prompt_layout(clip_model, ref, shared, layers):
    """Slots 1..n replaced (layer 0 in the token embeddings before the positional embedding,
    deeper in the hidden states); length up to the last EOT; features read at argmax of the
    token ids."""
    n = 2
    tokens = clip.tokenize(["X X " + t for t in TEXTS])
    eot = tokens.argmax(-1)
    prompts = _vision_prompts(n, 48, layers, shared, len(TEXTS), seed=5)
    enc = PromptedTextEncoder(clip_model)
    length = int(eot.max()) + 1
    blocks = list(clip_model.transformer.resblocks)
    short = [ref.causal_block(b, length) for b in blocks]
    pos = clip_model.positional_embedding[:length]
    with torch.no_grad(), ref.BlockInputs(blocks) as cap:
        feats, _ = enc(enc.embed(tokens), eot, prompts, n_slots=n)
    assert all(len(c) == 1 for c in cap.inputs)
    with torch.no_grad():
        expected = ref.text_forward(clip_model, tokens, prompts, n)
        emb = clip_model.token_embedding(tokens)[:, :length]
        xs = [c[0] for c in cap.inputs]
        for layer, x in enumerate(xs):
            assert x.shape == (length, 3, 48)
            torch.testing.assert_close(x, expected.inputs[layer][:length], atol=1e-5, rtol=1e-5)
            if layer == 0:
                p0 = ref.batched(prompts[0], 3)
                torch.testing.assert_close(x[1:1 + n], (p0 + pos[1:1 + n]).permute(1, 0, 2),
                                           atol=1e-6, rtol=0)
                torch.testing.assert_close(x[0], emb[:, 0] + pos[0], atol=1e-6, rtol=0)
                torch.testing.assert_close(x[1 + n:], (emb[:, 1 + n:] + pos[1 + n:]).permute(1, 0, 2),
                                           atol=1e-6, rtol=0)
                continue
            prev = short[layer - 1](xs[layer - 1])
            p = prompts[layer] if layer < len(prompts) else None
            if p is not None:
                torch.testing.assert_close(x[1:1 + n], ref.batched(p, 3).permute(1, 0, 2),
                                           atol=0, rtol=0)
                keep = [0] + list(range(1 + n, length))
                torch.testing.assert_close(x[keep], prev[keep], atol=1e-5, rtol=1e-5)
            else:
                torch.testing.assert_close(x, prev, atol=1e-5, rtol=1e-5)
        out = clip_model.ln_final(short[-1](xs[-1]).permute(1, 0, 2))
        by_hand = out[torch.arange(3), eot] @ clip_model.text_projection
    torch.testing.assert_close(feats, by_hand, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(feats, expected.features, atol=1e-5, rtol=1e-5)


def test_text_prompt_count_must_match_slots(clip_model):
    enc = PromptedTextEncoder(clip_model)
    tokens = clip.tokenize(["X X cat."])
    with pytest.raises(ValueError, match="3 tokens but the template has 2"):
        enc(enc.embed(tokens), tokens.argmax(-1), [torch.zeros(3, 48)], n_slots=2)


# ------------------------------------------------------------------ traced feature shift
@pytest.mark.parametrize("norm", ["relative", "rms", "fro"])
def test_vision_trace_equals_independent_shift(clip_model, images, ref, norm):
    prompts = _vision_prompts(3, 64, (1, 1), True, 2, seed=7)
    enc = PromptedImageEncoder(clip_model)
    with torch.no_grad():
        feats, shift = enc(images, prompts, trace=True, norm=norm)
        expected = ref.image_forward(clip_model, images, prompts)
        want = ref.vision_shift(clip_model, expected, norm, per_sample=True)
        # trace with sample indices: those samples only
        _, shift_1 = enc(images, prompts, trace=torch.tensor([1]), norm=norm)
        single = ref.image_forward(clip_model, images[1:], prompts)
        want_1 = ref.vision_shift(clip_model, single, norm, per_sample=True)
    assert shift.shape == (3, 2) and shift.dtype == torch.float32  # [L, traced images]
    assert shift_1.shape == (3, 1)
    assert (want > 0).all()  # layer 2 carries the propagated prompts
    torch.testing.assert_close(shift.double(), want, rtol=1e-4, atol=1e-7)
    torch.testing.assert_close(shift_1.double(), want_1, rtol=1e-4, atol=1e-7)
    assert not torch.allclose(shift_1, shift[:, :1], rtol=1e-3)
    torch.testing.assert_close(feats, expected.features, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("norm", ["relative", "rms", "fro"])
def test_text_trace_equals_independent_shift(clip_model, ref, norm):
    n = 2
    tokens = clip.tokenize(["X X " + t for t in TEXTS])
    prompts = _vision_prompts(n, 48, (1, 1), True, 3, seed=8)
    enc = PromptedTextEncoder(clip_model)
    with torch.no_grad():
        feats, shift = enc(enc.embed(tokens), tokens.argmax(-1), prompts, n, trace=True,
                           norm=norm)
        expected = ref.text_forward(clip_model, tokens, prompts, n)
        want = ref.text_shift(clip_model, expected, n, norm, per_sample=True)
        rows = torch.tensor([0, 2])
        _, shift_rows = enc(enc.embed(tokens), tokens.argmax(-1), prompts, n, trace=rows,
                            norm=norm)
        sub = ref.text_forward(clip_model, tokens[rows], prompts, n)
        want_rows = ref.text_shift(clip_model, sub, n, norm, per_sample=True)
    assert shift.shape == (3, len(TEXTS)) and shift_rows.shape == (3, 2) and (want > 0).all()
    torch.testing.assert_close(shift.double(), want, rtol=1e-4, atol=1e-7)
    torch.testing.assert_close(shift_rows.double(), want_rows, rtol=1e-4, atol=1e-7)
    torch.testing.assert_close(feats, expected.features, atol=1e-5, rtol=1e-5)


def test_trace_is_zero_without_prompts(clip_model, images):
    with torch.no_grad():
        _, v = PromptedImageEncoder(clip_model)(images, (), trace=True)
        enc = PromptedTextEncoder(clip_model)
        tokens = clip.tokenize(TEXTS)
        _, t = enc(enc.embed(tokens), tokens.argmax(-1), (), 0, trace=True)
    assert torch.equal(v, torch.zeros(3, 2)) and torch.equal(t, torch.zeros(3, len(TEXTS)))


def test_trace_does_not_change_features(clip_model, images):
    prompts = _vision_prompts(3, 64, (1, 1), True, 2)
    enc = PromptedImageEncoder(clip_model)
    with torch.no_grad():
        a, _ = enc(images, prompts)
        b, _ = enc(images, prompts, trace=True)
    torch.testing.assert_close(a, b, atol=0, rtol=0)


# ------------------------------------------------------------------ shift arithmetic
def test_shift_magnitude_by_hand():
    g = _gen(11)
    prompted, plain = torch.randn(5, 2, 4, generator=g), torch.randn(5, 2, 4, generator=g)
    omega = prompted - plain
    fro = [math.sqrt(float((omega[:, i] ** 2).sum())) for i in range(2)]
    base = [math.sqrt(float((plain[:, i] ** 2).sum())) for i in range(2)]
    assert shift_magnitude(prompted, plain, "fro").item() == pytest.approx(sum(fro) / 2, rel=1e-5)
    assert shift_magnitude(prompted, plain, "rms").item() == pytest.approx(
        sum(f / math.sqrt(20) for f in fro) / 2, rel=1e-5)
    assert shift_magnitude(prompted, plain, "relative").item() == pytest.approx(
        sum(f / b for f, b in zip(fro, base)) / 2, rel=1e-5)
    # valid tokens: sample 0 counts its first 2 tokens, sample 1 all 5
    valid = torch.zeros(5, 2, dtype=torch.bool)
    valid[:2, 0] = True
    valid[:, 1] = True
    f0 = math.sqrt(float((omega[:2, 0] ** 2).sum()))
    b0 = math.sqrt(float((plain[:2, 0] ** 2).sum()))
    assert shift_magnitude(prompted, plain, "rms", valid).item() == pytest.approx(
        (f0 / math.sqrt(8) + fro[1] / math.sqrt(20)) / 2, rel=1e-5)
    assert shift_magnitude(prompted, plain, "relative", valid).item() == pytest.approx(
        (f0 / b0 + fro[1] / base[1]) / 2, rel=1e-5)
    with pytest.raises(ValueError, match="FS.NORM"):
        shift_magnitude(prompted, plain, "l1")


def test_zero_shift_has_finite_gradient():
    x = torch.randn(4, 2, 3, requires_grad=True)
    shift_magnitude(x, x.detach(), "relative").backward()
    assert torch.isfinite(x.grad).all()


def test_consistency_loss_and_discrepancy_pair_by_index():
    fs = FeatureShift(vision=torch.tensor([0.1, 0.5, 0.2]), text=torch.tensor([0.4, 0.1]))
    assert consistency_loss(fs).item() == pytest.approx(0.3 ** 2 + 0.4 ** 2, rel=1e-6)
    assert discrepancy(fs).item() == pytest.approx(0.7, rel=1e-6)
