"""RESTORE_m / RESTORE_p: L_fs, surgery and alpha, the release variant (docs/METHOD.md sections 2-6)."""
import math

import pytest
import torch
import torch.nn.functional as F

import restore
from restore.errors import UserError
from restore.feature_shift import FeatureShift, consistency_loss, estimate, gram_norm
from conftest import numbers  # tests/ is on sys.path

CLASSES = ["red circle", "blue square", "green triangle", "striped star", "dotted moon"]
DEPTH = 3


def make_cfg(name, **restore_keys):
    cfg = restore.get_cfg_default()
    cfg.TRAINER.NAME = name
    cfg.TRAINER.MAPLE.PROMPT_DEPTH = DEPTH
    cfg.TRAINER.PROMPTSRC.PROMPT_DEPTH_TEXT = DEPTH
    cfg.TRAINER.PROMPTSRC.PROMPT_DEPTH_VISION = DEPTH
    for key, value in restore_keys.items():
        node, leaf = key.split("__")
        cfg.TRAINER.RESTORE[node][leaf] = value
    return cfg


def build(name, seed=0, **restore_keys):
    torch.manual_seed(seed)
    return restore.build_model(make_cfg(name, **restore_keys), CLASSES, restore.tiny_clip(seed=1))


@pytest.fixture(scope="module")
def batch():
    g = torch.Generator().manual_seed(3)
    return torch.randn(4, 3, 32, 32, generator=g), torch.tensor([0, 1, 2, 4])


# ------------------------------------------------------------ independent shift computation
def hand_block(block, x):
    """block(x) with a causal mask cut to len(x) when the block has a mask (text)."""
    if block.attn_mask is None:
        return block(x)
    saved = block.attn_mask
    block.attn_mask = saved[: x.shape[0], : x.shape[0]]
    try:
        return block(x)
    finally:
        block.attn_mask = saved


def hand_shifts_maple(model, images):
    """N^v_l and N^t_l (relative norm) of MaPLe computed by hand from the clip blocks."""
    clip_model, pl = model.clip, model.prompt_learner
    text_p = [pl.ctx] + list(pl.compound_prompts_text)
    vis_p = [pl.proj(pl.ctx)] + [f(p) for f, p in zip(pl.compound_prompt_projections,
                                                      pl.compound_prompts_text)]
    n = pl.ctx.shape[0]
    # vision
    v = clip_model.visual
    x = v.conv1(images).flatten(2).permute(0, 2, 1)
    x = torch.cat([v.class_embedding.expand(x.shape[0], 1, -1), x], 1) + v.positional_embedding
    t0 = x.shape[1]
    x = torch.cat([x, vis_p[0].expand(x.shape[0], -1, -1)], 1)
    x = v.ln_pre(x).permute(1, 0, 2)
    nv = []
    for l, block in enumerate(v.transformer.resblocks):
        if 0 < l < len(vis_p):
            x = torch.cat([x[:t0], vis_p[l].unsqueeze(1).expand(-1, x.shape[1], -1)], 0)
        y = block(x)
        plain = block(x[:t0])
        om = (y[:t0] - plain)
        nv.append((om.pow(2).sum((0, 2)).sqrt() / plain.pow(2).sum((0, 2)).sqrt()).mean())
        x = y
    # text
    tok = restore.prompting.PromptedTextEncoder(clip_model).tokenize(
        [f"a photo of a {c}." for c in CLASSES])
    eot = tok.argmax(-1)
    e = clip_model.token_embedding(tok)
    e = torch.cat([e[:, :1], text_p[0].expand(len(CLASSES), -1, -1), e[:, 1 + n:]], 1)
    x = (e + clip_model.positional_embedding).permute(1, 0, 2)
    nt = []
    for l, block in enumerate(clip_model.transformer.resblocks):
        if 0 < l < len(text_p):
            x = torch.cat([x[:1], text_p[l].unsqueeze(1).expand(-1, x.shape[1], -1), x[1 + n:]], 0)
        y = block(x)
        xs = torch.cat([x[:1], x[1 + n:]], 0)
        plain = hand_block(block, xs)
        ys = torch.cat([y[:1], y[1 + n:]], 0)
        per = []
        for i in range(len(CLASSES)):
            keep = eot[i] - n + 1  # S positions 0..eot-n
            om = ys[:keep, i] - plain[:keep, i]
            per.append(om.norm() / plain[:keep, i].norm())
        nt.append(torch.stack(per).mean())
        x = y
    return torch.stack(nv), torch.stack(nt)


# ------------------------------------------------------------------------------- tests
@pytest.mark.parametrize("name,base", [("RESTORE_m", "MaPLe"), ("RESTORE_p", "PromptSRC")])
def test_starts_exactly_at_base_method(name, base, batch):
    images, labels = batch
    ours, ref = build(name), build(base)
    for mode in ("train", "eval"):
        ours.train(mode == "train")
        ref.train(mode == "train")
        assert torch.equal(ours(images), ref(images)), mode


@pytest.mark.parametrize("name,base", [("RESTORE_m", "MaPLe"), ("RESTORE_p", "PromptSRC")])
def test_no_fs_no_surgery_loss_equals_base(name, base, batch):
    images, labels = batch
    ours = build(name, FS__WEIGHT=0.0, SURGERY__MODE="off").train()
    ref = build(base).train()
    loss, logs = numbers(ours.loss({"img": images, "label": labels}))
    ref_loss, _ = numbers(ref.loss({"img": images, "label": labels}))
    assert loss.item() == ref_loss.item()
    assert "fs" not in logs and "alpha_v" not in logs


def test_lfs_matches_blocks_called_by_hand(batch):
    images, labels = batch
    model = build("RESTORE_m", SURGERY__MODE="off").train()
    nv, nt = hand_shifts_maple(model, images)
    shift = model.encode(images, trace=True).shift
    torch.testing.assert_close(shift.vision, nv, rtol=1e-4, atol=1e-6)
    torch.testing.assert_close(shift.text, nt, rtol=1e-4, atol=1e-6)
    _, logs = numbers(model.loss({"img": images, "label": labels}))
    expected = (nv - nt).pow(2).sum().item()
    assert logs["l_fs"] == pytest.approx(expected, rel=1e-4)
    assert logs["fs"] == pytest.approx(expected, rel=1e-4)  # FS.WEIGHT 1


def test_lfs_gradient_reaches_both_branches_not_clip(batch):
    images, labels = batch
    model = build("RESTORE_m", SURGERY__MODE="off").train()
    enc = model.encode(images, trace=True)
    restore.feature_shift.consistency_loss(enc.shift).backward()
    pl = model.prompt_learner
    for name, p in [("ctx", pl.ctx), ("proj", pl.proj.weight),
                    ("compound text", pl.compound_prompts_text[0]),
                    ("coupling", pl.compound_prompt_projections[1].weight)]:
        assert p.grad is not None and p.grad.abs().sum() > 0, name
    assert all(p.grad is None for p in model.clip.parameters())


def test_alpha_is_gamma_beta_times_summed_shift_and_ema(batch):
    images, labels = batch
    model = build("RESTORE_m", SURGERY__GAMMA=0.3, SURGERY__BETA=0.7, SURGERY__EMA=0.5).train()
    alphas = []
    for _ in range(3):
        shift = model.encode(images, trace=True).shift
        _, logs = numbers(model.loss({"img": images, "label": labels}))
        assert logs["alpha_v"] == pytest.approx(0.3 * shift.vision.sum().item(), rel=1e-5)
        assert logs["alpha_t"] == pytest.approx(0.7 * shift.text.sum().item(), rel=1e-5)
        alphas.append(torch.tensor([logs["alpha_v"], logs["alpha_t"]]))
        # move the prompts so that the alphas differ between steps
        with torch.no_grad():
            model.prompt_learner.ctx.add_(0.05)
    ema = alphas[0]
    for a in alphas[1:]:
        ema = 0.5 * ema + 0.5 * a
    torch.testing.assert_close(model.alpha_ema, ema, rtol=1e-5, atol=1e-7)
    assert "alpha_ema" in model.state_to_save()


def test_eval_uses_ema_alpha_and_live_recomputes(batch):
    images, _ = batch
    model = build("RESTORE_m").eval()
    with torch.no_grad():  # non-zero adapters so that alpha matters
        for adapter in (model.visual_adapter, model.text_adapter):
            adapter.down.weight.normal_(std=0.5)
        model.alpha_ema.copy_(torch.tensor([0.4, 0.6]))

    def expected(alpha_v, alpha_t):
        img, _ = model.image_encoder(images, model.vision_prompts())
        txt, _ = model.text_encoder(model.token_embeds, model.eot, model.text_prompts(),
                                    model.n_slots)
        img = img + alpha_v * model.visual_adapter(img)
        txt = txt + alpha_t * model.text_adapter(txt)
        img, txt = F.normalize(img, dim=-1), F.normalize(txt, dim=-1)
        return model.clip.logit_scale.exp() * img @ txt.t()

    with torch.no_grad():
        torch.testing.assert_close(model(images), expected(0.4, 0.6))
        with model.cached_text_features():
            torch.testing.assert_close(model(images), expected(0.4, 0.6))
        model.alpha_at_test = "live"
        shift = model.feature_shift(images)
        live = expected(0.05 * shift.vision.sum(), 0.05 * shift.text.sum())
        torch.testing.assert_close(model(images), live)
        with model.cached_text_features():
            torch.testing.assert_close(model(images), live)


def trace_counts(monkeypatch):
    """Patch the per-block shift computation to record how many samples each call traces."""
    seen = []
    original = restore.prompting.shift_per_sample

    def spy(prompted, plain, norm="relative", valid=None):
        seen.append(prompted.shape[1])
        return original(prompted, plain, norm, valid)

    monkeypatch.setattr(restore.prompting, "shift_per_sample", spy)
    return seen


def test_cached_text_is_traced_only_when_a_shift_is_asked(batch, monkeypatch):
    """Evaluation with an EMA alpha needs no text trace: the cache encodes the classes without
    one; the first traced encode (the analysis, a live alpha) traces them once."""
    images, _ = batch
    model = build("RESTORE_m").eval()
    with torch.no_grad():
        want = model.feature_shift(images)
        calls = trace_counts(monkeypatch)
        with model.cached_text_features():
            model(images)
            model(images)
            assert calls == []  # no prompt-free pass for plain logits
            first = model.feature_shift(images)
            n = len(calls)
            second = model.feature_shift(images)
    layers_v, layers_t = model.image_encoder.num_layers, model.text_encoder.num_layers
    assert n == layers_v + layers_t and len(calls) == n + layers_v  # the text traced once
    for got in (first, second):
        assert torch.equal(got.vision, want.vision) and torch.equal(got.text, want.text)


def test_state_round_trip_into_new_classes_keeps_alpha(batch):
    images, labels = batch
    model = build("RESTORE_m").train()
    model.loss({"img": images, "label": labels})
    state = model.state_to_save()
    torch.manual_seed(5)
    other = restore.build_model(make_cfg("RESTORE_m"), ["cat", "dog", "owl"],
                                restore.tiny_clip(seed=1))
    other.load_state(state)
    torch.testing.assert_close(other.alpha_ema, model.alpha_ema)
    assert bool(other.alpha_ema_ready)
    torch.testing.assert_close(other.visual_adapter.up.weight, model.visual_adapter.up.weight)


def test_text_classes_subset_sees_k_sequences_and_is_unbiased(batch, monkeypatch):
    images, _ = batch
    model = build("RESTORE_m", FS__TEXT_CLASSES=2).train()
    seen = trace_counts(monkeypatch)
    rows = model.training_trace()
    assert rows.numel() == 2 and len(set(rows.tolist())) == 2
    model.encode(images, trace=rows)
    vision_layers = model.image_encoder.num_layers
    assert seen[:vision_layers] == [4] * vision_layers  # every image
    assert seen[vision_layers:] == [2] * model.text_encoder.num_layers  # k classes
    monkeypatch.undo()

    with torch.no_grad():
        full, full_var = model.encode_text(trace=True)[1]
        draws = [model.encode_text(trace=model.training_trace())[1] for _ in range(300)]
    means = torch.stack([m for m, _ in draws])
    assert full_var is None and all(v is not None for _, v in draws)
    # The mean over a uniform subset is unbiased; 300 draws put it within 5% of the full value.
    torch.testing.assert_close(means.mean(0), full, rtol=0.05, atol=0)
    assert means.std(0).sum() > 0  # the subsets really differ


def test_vision_images_subset_sees_k_images_in_training_only(batch, monkeypatch):
    images, labels = batch
    model = build("RESTORE_m", FS__VISION_IMAGES=2).train()
    seen = trace_counts(monkeypatch)
    model.loss({"img": images, "label": labels})
    vision_layers = model.image_encoder.num_layers
    assert seen[:vision_layers] == [2] * vision_layers  # k of the 4 images
    assert seen[vision_layers:] == [len(CLASSES)] * model.text_encoder.num_layers
    seen.clear()
    model.eval()
    model.feature_shift(images)  # evaluation traces every image
    assert seen[:vision_layers] == [4] * vision_layers


def test_prompt_free_recompute_is_exact_and_keeps_less(batch):
    """FS.PROMPT_FREE recompute: the same loss and gradients, bit for bit, as the default; fewer
    bytes saved for backward (the prompt-free pass's activations are recomputed)."""
    images, labels = batch

    def step(mode):
        model = build("RESTORE_m", FS__PROMPT_FREE=mode).train()
        saved = {}

        def pack(t):
            saved[t.untyped_storage().data_ptr()] = t.untyped_storage().nbytes()
            return t

        with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
            loss, _ = numbers(model.loss({"img": images, "label": labels}))
        loss.backward()
        grads = {k: p.grad for k, p in model.named_parameters() if p.grad is not None}
        return loss.detach(), grads, sum(saved.values())

    loss, grads, kept = step("grad")
    loss_r, grads_r, kept_r = step("recompute")
    assert torch.equal(loss, loss_r) and grads.keys() == grads_r.keys()
    assert all(torch.equal(grads[k], grads_r[k]) for k in grads)
    assert kept_r < 0.8 * kept
    with pytest.raises(ValueError, match="FS.PROMPT_FREE"):
        build("RESTORE_m", FS__PROMPT_FREE="sometimes")


def test_subset_estimate_is_unbiased_by_enumeration():
    """Over every k-subset of a population of n per-sample shifts: the subset mean averages to the
    population mean, the variance estimate to the subset mean's true variance, and the corrected
    L_fs to the full-batch L_fs (uncorrected, it is biased upward by the two variances)."""
    from itertools import combinations

    g = torch.Generator().manual_seed(0)
    n_v, n_t, k_v, k_t, layers = 6, 5, 3, 2, 2
    vis = torch.rand(layers, n_v, generator=g, dtype=torch.float64)
    txt = torch.rand(layers, n_t, generator=g, dtype=torch.float64)
    full = consistency_loss(FeatureShift(vis.mean(1), txt.mean(1)))
    means, variances, losses, naive = [], [], [], []
    for sv in combinations(range(n_v), k_v):
        v_mean, v_var = estimate(vis[:, list(sv)], torch.tensor(sv), n_v)
        means.append(v_mean)
        variances.append(v_var)
        for st in combinations(range(n_t), k_t):
            t_mean, t_var = estimate(txt[:, list(st)], torch.tensor(st), n_t)
            losses.append(consistency_loss(FeatureShift(v_mean, t_mean, v_var, t_var)))
            naive.append(consistency_loss(FeatureShift(v_mean, t_mean)))
    means, variances = torch.stack(means), torch.stack(variances)
    torch.testing.assert_close(means.mean(0), vis.mean(1))
    true_var = ((means - vis.mean(1)) ** 2).mean(0)
    torch.testing.assert_close(variances.mean(0), true_var)
    torch.testing.assert_close(torch.stack(losses).mean(), full)
    assert torch.stack(naive).mean() > full + 1e-3  # the bias the correction removes
    # every sample traced: no variance; a subset of 1 has no variance estimate
    assert estimate(vis, True, n_v)[1] is None
    with pytest.raises(ValueError, match="at least 2"):
        estimate(vis[:, :1], torch.tensor([0]), n_v)


def test_subset_of_one_is_refused():
    from restore.checks import check_config
    for key in ("TEXT_CLASSES", "VISION_IMAGES"):
        cfg = restore.get_cfg_default()
        cfg.TRAINER.NAME = "RESTORE_m"
        cfg.TRAINER.RESTORE.FS[key] = 1
        with pytest.raises(UserError, match=f"TRAINER.RESTORE.FS.{key} is 1"):
            check_config(cfg)


def test_fixed_and_off_modes(batch):
    images, labels = batch
    fixed = build("RESTORE_m", SURGERY__MODE="fixed", SURGERY__GAMMA=0.2,
                  SURGERY__BETA=0.3).train()
    _, logs = numbers(fixed.loss({"img": images, "label": labels}))
    assert (logs["alpha_v"], logs["alpha_t"]) == pytest.approx((0.2, 0.3))
    off = build("RESTORE_m", SURGERY__MODE="off")
    assert not hasattr(off, "visual_adapter")
    with pytest.raises(ValueError, match="SURGERY.MODE"):
        build("RESTORE_m", SURGERY__MODE="sometimes")


def test_release_variant_by_hand(batch):
    images, labels = batch
    model = build("RESTORE_m", FS__DEFINITION="release", SURGERY__MODE="release").train()
    pl = model.prompt_learner
    pairs = [(p, f(p)) for f, p in zip(pl.compound_prompt_projections, pl.compound_prompts_text)]
    assert len(pairs) == DEPTH - 1  # layers 1..J-1 only

    def g(p):  # ||P^T P||_F as the sum of the 4th powers of the singular values
        return torch.linalg.svdvals(p.detach().double()).pow(4).sum().sqrt()

    init_t = torch.stack([g(t) for t, _ in pairs])
    init_v = torch.stack([g(v) for _, v in pairs])
    _, logs = numbers(model.loss({"img": images, "label": labels}))
    assert logs["l_fs"] == pytest.approx(0.0, abs=1e-10)  # ratios are 1 at the first forward
    torch.testing.assert_close(model.release_init[0].double(), init_t, rtol=1e-5, atol=0)

    with torch.no_grad():  # grow the text prompts of layer 1 by 2x: its ratio becomes 4
        pl.compound_prompts_text[0].mul_(2.0)
    new_pairs = [(p, f(p)) for f, p in zip(pl.compound_prompt_projections,
                                           pl.compound_prompts_text)]
    r_t = torch.stack([g(t) for t, _ in new_pairs]) / init_t
    r_v = torch.stack([g(v) for _, v in new_pairs]) / init_v
    assert r_t[0].item() == pytest.approx(4.0, rel=1e-5)
    _, logs = numbers(model.loss({"img": images, "label": labels}))
    assert logs["l_fs"] == pytest.approx((r_t - r_v).pow(2).sum().item(), rel=1e-4)

    # one-shot ratio update after epoch floor(E/3) = 3 for E = 10, with the release's gains
    r0 = model.calib_ratio.clone()
    for epoch in range(10):
        model.on_epoch_end(epoch, 10)
        if epoch < 3:
            torch.testing.assert_close(model.calib_ratio, r0)
        if epoch == 3:
            expected = r0 + torch.tensor([
                0.005 * torch.stack([g(v) for _, v in new_pairs]).mean().item(),
                0.02 * torch.stack([g(t) for t, _ in new_pairs]).mean().item()])
            torch.testing.assert_close(model.calib_ratio, expected.float(), rtol=1e-5, atol=0)
            after = model.calib_ratio.clone()
    torch.testing.assert_close(model.calib_ratio, after)  # never updated again
    assert gram_norm(torch.eye(3)).item() == pytest.approx(math.sqrt(3))


def test_release_calibrator_output(batch):
    images, _ = batch
    model = build("RESTORE_m", SURGERY__MODE="release").eval()
    with torch.no_grad():
        img, _ = model.image_encoder(images, model.vision_prompts())
        txt, _ = model.text_encoder(model.token_embeds, model.eot, model.text_prompts(),
                                    model.n_slots)
        r_v, r_t = model.calib_ratio.tolist()

        def ffn(adapter, z):
            h = adapter.fc1(F.layer_norm(z, z.shape[-1:], adapter.ln.weight, adapter.ln.bias))
            return adapter.fc2(h * torch.sigmoid(1.702 * h))

        img = F.normalize(img + r_v * ffn(model.visual_adapter, img), dim=-1)
        txt = F.normalize(txt + r_t * ffn(model.text_adapter, txt), dim=-1)
        torch.testing.assert_close(model(images), model.clip.logit_scale.exp() * img @ txt.t())


def test_training_lowers_loss_and_lfs_weight_lowers_lfs(batch):
    images, labels = batch
    final = {}
    for weight in (0.0, 1.0):
        model = build("RESTORE_m", FS__WEIGHT=weight).train()
        opt = torch.optim.SGD(model.trainable_parameters(), lr=0.05, momentum=0.9)
        first = None
        for _ in range(25):
            loss, logs = numbers(model.loss({"img": images, "label": labels}))
            opt.zero_grad()
            loss.backward()
            opt.step()
            first = loss.item() if first is None else first
        last, logs = numbers(model.loss({"img": images, "label": labels}))
        assert last.item() < first
        final[weight] = logs["l_fs"]
    assert final[1.0] < final[0.0]
