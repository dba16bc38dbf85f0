"""Each method of restore.methods against an independent computation on the clip modules.

`spec()` below reads a model's parameters and composes the per-layer prompts the way docs/METHOD.md
section 1 (and docs/REPRODUCING.md section 8) says each method does; `reference()` then runs the clip
towers by hand (conftest `ref`), so every comparison can fail.
"""
import math
import re

import clip
import pytest
import torch
import torch.nn.functional as F
from clip.model import convert_weights

import restore
from restore.methods import gpa_weights, registry
from restore.templates import PROMPTSRC_TEMPLATES

from conftest import causal_block, numbers  # noqa: F401  (tests/ is on sys.path)

# The tensors that must train, per method (with the small configs of the method specs' `tiny`). The
# methods checked here against the hand reference below; RESTORE's are in test_restore.py, and every
# registered method trains a step in test_registry.py.
TRAINABLE = {
    "ZeroshotCLIP": set(),
    "CoOp": {"prompt_learner.ctx"},
    "CoCoOp": {"prompt_learner.ctx", "prompt_learner.meta_net.linear1.weight",
               "prompt_learner.meta_net.linear1.bias", "prompt_learner.meta_net.linear2.weight",
               "prompt_learner.meta_net.linear2.bias"},
    "LPT": {"prompt_learner.ctx", "prompt_learner.text_deep.0"},
    "VPT": {"prompt_learner.vision_ctx", "prompt_learner.vision_deep.0"},
    "IVLP": {"prompt_learner.ctx", "prompt_learner.text_deep.0", "prompt_learner.vision_ctx",
             "prompt_learner.vision_deep.0"},
    "MaPLe": {"prompt_learner.ctx", "prompt_learner.proj.weight", "prompt_learner.proj.bias",
              "prompt_learner.compound_prompts_text.0",
              "prompt_learner.compound_prompt_projections.0.weight",
              "prompt_learner.compound_prompt_projections.0.bias"},
    "PromptSRC": {"prompt_learner.ctx", "prompt_learner.text_deep.0",
                  "prompt_learner.vision_ctx", "prompt_learner.vision_deep.0"},
}
METHOD_NAMES = list(TRAINABLE)
PROMPTED = [m for m in METHOD_NAMES if m != "ZeroshotCLIP"]
# Gaussian prompt aggregation over 4 epochs, centred inside them.
GPA = ("OPTIM.MAX_EPOCH", 4, "TRAINER.PROMPTSRC.GPA_MEAN", 3.0, "TRAINER.PROMPTSRC.GPA_STD", 1.5)


def build(make_cfg, name, classnames, *opts, seed=0, randomize=True, clip_seed=0):
    cfg = make_cfg(name, *opts)
    torch.manual_seed(seed)
    model = restore.build_model(cfg, classnames, restore.tiny_clip(clip_seed))
    if randomize:
        from conftest import randomize_
        randomize_(model, std=0.3, seed=seed + 100)
        if name == "CoCoOp":  # the tiny meta-net has 32 // 16 = 2 hidden ReLUs: keep them alive
            with torch.no_grad():
                model.prompt_learner.meta_net.linear1.bias.fill_(1.0)
    return cfg, model


def linear(layer, x):
    return x @ layer.weight.t() + layer.bias


def spec(name, model, cfg):
    """Per-layer prompts, text template and number of context slots, per docs/METHOD.md section 1."""
    pl = getattr(model, "prompt_learner", None)
    init = "a photo of a"
    if name == "ZeroshotCLIP":
        return dict(text=[], vision=[], template="a photo of a {}.", n=0)
    if name in ("CoOp", "CoCoOp"):
        node = cfg.TRAINER.COOP if name == "CoOp" else cfg.TRAINER.COCOOP
        words = node.CTX_INIT.replace("_", " ")
        n = len(words.split(" ")) if words else node.N_CTX
        prefix = words or " ".join(["X"] * n)
        return dict(text=[pl.ctx], vision=[], template=prefix + " {}.", n=n)
    if name == "VPT":
        return dict(text=[], vision=[pl.vision_ctx, *pl.vision_deep], template=init + " {}.", n=0)
    if name == "MaPLe":
        deep_v = [linear(f, p) for f, p in zip(pl.compound_prompt_projections,
                                                pl.compound_prompts_text)]
        return dict(text=[pl.ctx, *pl.compound_prompts_text],
                    vision=[linear(pl.proj, pl.ctx), *deep_v],
                    template=init + " {}.", n=cfg.TRAINER.MAPLE.N_CTX)
    node = {"LPT": cfg.TRAINER.LPT, "IVLP": cfg.TRAINER.IVLP, "PromptSRC": cfg.TRAINER.PROMPTSRC}
    n = node[name].N_CTX_TEXT
    vision = [] if name == "LPT" else [pl.vision_ctx, *pl.vision_deep]
    return dict(text=[pl.ctx, *pl.text_deep], vision=vision, template=init + " {}.", n=n)


def class_tokens(template, classnames):
    return clip.tokenize([template.format(c.replace("_", " ")) for c in classnames])


def reference(name, model, cfg, classnames, images, ref, clip_model=None):
    """(logits, image forward, text forward(s), spec) computed by hand."""
    cm = clip_model if clip_model is not None else model.clip
    s = spec(name, model, cfg)
    tokens = class_tokens(s["template"], classnames)
    img = ref.image_forward(cm, images, s["vision"])
    if name == "CoCoOp":
        pl = model.prompt_learner
        u = F.normalize(img.features, dim=-1)
        bias = linear(pl.meta_net.linear2, torch.relu(linear(pl.meta_net.linear1, u)))
        texts = [ref.text_forward(cm, tokens, [pl.ctx + bias[b]], s["n"])
                 for b in range(images.shape[0])]
        logits = torch.cat([ref.logits(cm, img.features[b:b + 1], t.features)
                            for b, t in enumerate(texts)])
        return logits, img, texts, s
    txt = ref.text_forward(cm, tokens, s["text"], s["n"])
    return ref.logits(cm, img.features, txt.features), img, txt, s


# ------------------------------------------------------------------ building
def test_build_model_unknown_name_lists_valid(make_cfg, classnames, clip_model):
    cfg = make_cfg("NoSuchTrainer")
    with pytest.raises(ValueError) as err:
        restore.build_model(cfg, classnames, clip_model)
    msg = str(err.value)
    assert "NoSuchTrainer" in msg
    for name in registry.names():
        assert name in msg
    assert set(METHOD_NAMES) | {"RESTORE_m", "RESTORE_p", "MaPLe_FSA"} <= set(registry.names())


@pytest.mark.parametrize("name", METHOD_NAMES)
def test_build_model_picks_the_method_and_freezes_clip(make_cfg, classnames, name):
    cm = restore.tiny_clip(0)
    for p in cm.parameters():
        p.requires_grad_(True)  # the method must freeze it
    model = restore.build_model(make_cfg(name), classnames, cm)
    assert type(model).__name__ == name and model.clip is cm
    assert not any(p.requires_grad for p in cm.parameters())
    trainable = {k for k, p in model.named_parameters() if p.requires_grad}
    assert trainable == TRAINABLE[name]
    assert model.classnames == ["cat", "golden retriever", "sports car"]


# ------------------------------------------------------------------ tokens entering each block
@pytest.mark.parametrize("name", METHOD_NAMES)
def test_block_inputs_and_logits(make_cfg, classnames, images, ref, name):
    """What enters every vision and text block, and the final logits, against the reference."""
    cfg, model = build(make_cfg, name, classnames)
    vblocks = list(model.clip.visual.transformer.resblocks)
    tblocks = list(model.clip.transformer.resblocks)
    with torch.no_grad(), ref.BlockInputs(vblocks) as vcap, ref.BlockInputs(tblocks) as tcap:
        out = model(images)
    assert all(len(c) == 1 for c in vcap.inputs + tcap.inputs)
    with torch.no_grad():
        want, img, txt, s = reference(name, model, cfg, classnames, images, ref)
    assert out.shape == (2, 3)
    s_tok = 17
    n_v = 0 if not s["vision"] else s["vision"][0].shape[0]
    for layer, (x, x_ref) in enumerate(zip([c[0] for c in vcap.inputs], img.inputs)):
        assert x.shape == (s_tok + n_v, 2, 64)  # appended, replaced, propagated past the depth
        torch.testing.assert_close(x, x_ref, atol=1e-5, rtol=1e-5)
    texts = txt if isinstance(txt, list) else [txt]
    length = int(model.eot.max()) + 1  # causal: positions after the last EOT are never run
    assert length < 77
    for layer, x in enumerate([c[0] for c in tcap.inputs]):
        assert x.shape == (length, 3 * len(texts), 48)  # slots replaced, length unchanged
        x_ref = torch.cat([t.inputs[layer][:length] for t in texts], dim=1)  # CoCoOp: image-major
        torch.testing.assert_close(x, x_ref, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(out, want, atol=1e-5, rtol=1e-5)
    # the hand-computed logit of one pair, spelled out
    if name != "CoCoOp":
        # tolerance as the assert_close above: F.cosine_similarity and the method's
        # normalise-then-matmul round differently in float32 (2.5e-6 seen on torch 2.14)
        i, c = 1, 2
        cos = F.cosine_similarity(img.features[i], txt.features[c], dim=0)
        assert out[i, c].item() == pytest.approx(
            (math.exp(model.clip.logit_scale.item()) * cos).item(), rel=1e-5, abs=1e-5)


@pytest.mark.parametrize("name", ["IVLP", "MaPLe", "PromptSRC", "VPT", "LPT", "CoOp"])
def test_prompt_tokens_by_position(make_cfg, classnames, images, ref, name):
    """Spelled out on the captured block inputs: vision prompt rows = the layer's prompt (layer 0
    after ln_pre), text slots 1..n = the layer's prompt (layer 0 plus positional embedding),
    propagation past the depth = the previous block's output, computed here with block(x)."""
    cfg, model = build(make_cfg, name, classnames)
    cm = model.clip
    s = spec(name, model, cfg)
    vblocks, tblocks = list(cm.visual.transformer.resblocks), list(cm.transformer.resblocks)
    with torch.no_grad(), ref.BlockInputs(vblocks) as vcap, ref.BlockInputs(tblocks) as tcap:
        model(images)
    with torch.no_grad():
        xs = [c[0] for c in vcap.inputs]
        for layer, x in enumerate(xs):
            if not s["vision"]:
                assert x.shape[0] == 17
                continue
            if layer == 0:
                want = cm.visual.ln_pre(s["vision"][0]).unsqueeze(1).expand(-1, 2, -1)
            elif layer < len(s["vision"]):
                want = s["vision"][layer].unsqueeze(1).expand(-1, 2, -1)
            else:
                want = vblocks[layer - 1](xs[layer - 1])[17:]
            torch.testing.assert_close(x[17:], want, atol=1e-5, rtol=1e-5)
        xs = [c[0] for c in tcap.inputs]
        n, pos = s["n"], cm.positional_embedding
        tokens = class_tokens(s["template"], classnames)
        emb = cm.token_embedding(tokens)
        for layer, x in enumerate(xs):
            if layer == 0:
                if s["text"]:
                    torch.testing.assert_close(
                        x[1:1 + n], (s["text"][0] + pos[1:1 + n]).unsqueeze(1).expand(-1, 3, -1),
                        atol=1e-6, rtol=0)
                rest = [0] + list(range(1 + n, x.shape[0]))  # x: up to the last EOT
                torch.testing.assert_close(x[rest], (emb + pos).permute(1, 0, 2)[rest],
                                           atol=1e-6, rtol=0)
            elif layer < len(s["text"]):
                torch.testing.assert_close(x[1:1 + n], s["text"][layer].unsqueeze(1).expand(-1, 3, -1),
                                           atol=0, rtol=0)
            else:
                previous = ref.causal_block(tblocks[layer - 1], x.shape[0])
                torch.testing.assert_close(x, previous(xs[layer - 1]), atol=1e-5, rtol=1e-5)


def test_maple_coupling_and_ctx_init(make_cfg, classnames, images, ref):
    """MaPLe N_CTX 2 + "a photo of a": ctx = embeddings of "a", "photo"; "of a" stay in the
    template; vision layer 0 = proj(ctx), layer l = Linear_l(text prompt_l)."""
    cfg, model = build(make_cfg, "MaPLe", classnames, randomize=False)
    cm, pl = model.clip, model.prompt_learner
    ids = clip.tokenize(["a photo of a"])[0]
    torch.testing.assert_close(pl.ctx.detach(), cm.token_embedding.weight[ids[1:3]], atol=0, rtol=0)
    tokens = clip.tokenize([f"a photo of a {c.replace('_', ' ')}." for c in classnames])
    torch.testing.assert_close(model.token_embeds, cm.token_embedding(tokens), atol=0, rtol=0)
    assert torch.equal(model.eot, tokens.argmax(-1))
    assert pl.proj.in_features == 48 and pl.proj.out_features == 64
    # all coupling layers start identical (one Linear deep-copied), as in MaPLe
    cfg3, model3 = build(make_cfg, "MaPLe", classnames, "TRAINER.MAPLE.PROMPT_DEPTH", 3,
                         randomize=False)
    f = model3.prompt_learner.compound_prompt_projections
    assert len(f) == 2 and torch.equal(f[0].weight, f[1].weight)
    assert f[0].weight.data_ptr() != f[1].weight.data_ptr()
    # the positions of "of", "a" (3, 4) enter block 0 as their frozen embeddings
    with torch.no_grad(), ref.BlockInputs(list(cm.transformer.resblocks)) as cap:
        model(images)
    x0 = cap.inputs[0][0]
    want = (cm.token_embedding.weight[ids[3:5]] + cm.positional_embedding[3:5])
    torch.testing.assert_close(x0[3:5], want.unsqueeze(1).expand(-1, 3, -1), atol=1e-6, rtol=0)
    # depth 1 at init: the text side is exactly the frozen CLIP on "a photo of a <class>."
    cfg1, model1 = build(make_cfg, "MaPLe", classnames, "TRAINER.MAPLE.PROMPT_DEPTH", 1,
                         randomize=False)
    with torch.no_grad():
        torch.testing.assert_close(model1.encode_text()[0], cm.encode_text(tokens), atol=1e-5,
                                   rtol=0)
        # and the vision prompt is proj(ctx), computed here
        randomize_ = ref.randomize_
        randomize_(model1, seed=3)
        p1 = model1.prompt_learner
        want = ref.image_forward(cm, images, [linear(p1.proj, p1.ctx)]).features
        torch.testing.assert_close(model1.encode_image(images)[0], want, atol=1e-5, rtol=1e-5)


def test_maple_without_init_uses_random_ctx_and_x_template(make_cfg, classnames):
    _, model = build(make_cfg, "MaPLe", classnames, "TRAINER.MAPLE.N_CTX", 5, randomize=False)
    tokens = class_tokens("X X X X X {}.", classnames)
    torch.testing.assert_close(model.token_embeds, model.clip.token_embedding(tokens), atol=0,
                               rtol=0)
    assert model.prompt_learner.ctx.shape == (5, 48)
    assert 0.01 < model.prompt_learner.ctx.std().item() < 0.04  # N(0, 0.02)


@pytest.mark.parametrize("init,n_words", [("a photo of a", 4), ("a_photo_of", 3)])
def test_coop_ctx_init_sets_context_length(make_cfg, classnames, init, n_words):
    _, model = build(make_cfg, "CoOp", classnames, "TRAINER.COOP.CTX_INIT", init,
                     randomize=False)
    cm, words = model.clip, init.replace("_", " ")
    ids = clip.tokenize([words])[0]
    assert model.prompt_learner.ctx.shape == (n_words, 48)  # not N_CTX (3 in the small cfg)
    torch.testing.assert_close(model.prompt_learner.ctx.detach(),
                               cm.token_embedding.weight[ids[1:1 + n_words]], atol=0, rtol=0)
    tokens = class_tokens(words + " {}.", classnames)
    with torch.no_grad():  # at init, exactly the frozen CLIP on the init string
        torch.testing.assert_close(model.encode_text()[0], cm.encode_text(tokens), atol=1e-5,
                                   rtol=0)


@pytest.mark.parametrize("name,n", [("IVLP", 2), ("PromptSRC", 4), ("LPT", 4)])
def test_deep_text_ctx_init(make_cfg, classnames, name, n):
    _, model = build(make_cfg, name, classnames, randomize=False)
    ids = clip.tokenize(["a photo of a"])[0]
    torch.testing.assert_close(model.prompt_learner.ctx.detach(),
                               model.clip.token_embedding.weight[ids[1:1 + n]], atol=0, rtol=0)
    tokens = class_tokens("a photo of a {}.", classnames)
    torch.testing.assert_close(model.token_embeds, model.clip.token_embedding(tokens), atol=0,
                               rtol=0)


@pytest.mark.parametrize("name,key", [("IVLP", "TRAINER.IVLP.N_CTX_TEXT"),
                                      ("PromptSRC", "TRAINER.PROMPTSRC.N_CTX_TEXT"),
                                      ("LPT", "TRAINER.LPT.N_CTX_TEXT")])
def test_deep_text_ctx_beyond_four_is_random(make_cfg, classnames, name, key):
    """As the anchors: CTX_INIT is used only when N_CTX_TEXT <= 4; else N(0, 0.02) and "X ..."."""
    _, model = build(make_cfg, name, classnames, key, 5, randomize=False)
    ctx = model.prompt_learner.ctx
    assert ctx.shape == (5, 48) and 0.01 < ctx.std().item() < 0.04
    tokens = class_tokens("X X X X X {}.", classnames)
    torch.testing.assert_close(model.token_embeds, model.clip.token_embedding(tokens), atol=0,
                               rtol=0)


def test_zeroshot_uses_dataset_template(make_cfg, classnames, images, ref):
    cfg, model = build(make_cfg, "ZeroshotCLIP", classnames, "DATASET.NAME", "OxfordPets")
    cm = model.clip
    tokens = class_tokens("a photo of a {}, a type of pet.", classnames)
    with torch.no_grad():
        want = ref.logits(cm, cm.encode_image(images), cm.encode_text(tokens))
        torch.testing.assert_close(model(images), want, atol=1e-5, rtol=1e-5)
    assert model.trainable_parameters() == []


# ------------------------------------------------------------------ gradients
@pytest.mark.parametrize("name", PROMPTED)
def test_only_prompts_train_and_clip_stays_bit_identical(make_cfg, classnames, images, name):
    _, model = build(make_cfg, name, classnames)
    before_clip = {k: v.clone() for k, v in model.clip.state_dict().items()}
    before = {k: p.detach().clone() for k, p in model.named_parameters() if p.requires_grad}
    assert set(before) == TRAINABLE[name]
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=5e-4)
    loss, summary = numbers(model.loss({"img": images, "label": torch.tensor([0, 2])}))
    assert summary["loss"] == pytest.approx(loss.item())
    opt.zero_grad()
    loss.backward()
    for k, p in model.named_parameters():
        if k in TRAINABLE[name]:
            assert p.grad is not None and p.grad.abs().sum() > 0, k
        else:
            assert p.grad is None, k
    opt.step()
    for k, v in model.clip.state_dict().items():
        assert torch.equal(v, before_clip[k]), k
    for k, p in model.named_parameters():
        if k in before:
            assert not torch.equal(p, before[k]), k


def test_zeroshot_has_nothing_to_train(make_cfg, classnames):
    _, model = build(make_cfg, "ZeroshotCLIP", classnames)
    assert model.trainable_parameters() == [] and model.state_to_save() == {}


# ------------------------------------------------------------------ feature shift
@pytest.mark.parametrize("norm", ["relative", "rms", "fro"])
@pytest.mark.parametrize("name", ["MaPLe", "IVLP"])
def test_feature_shift_equals_independent_computation(make_cfg, classnames, images, ref, name,
                                                      norm):
    cfg, model = build(make_cfg, name, classnames, "TRAINER.RESTORE.FS.NORM", norm)
    shift = model.feature_shift(images)
    with torch.no_grad():
        _, img, txt, s = reference(name, model, cfg, classnames, images, ref)
        want_v = ref.vision_shift(model.clip, img, norm)
        want_t = ref.text_shift(model.clip, txt, s["n"], norm)
    assert shift.vision.shape == (3,) and shift.text.shape == (3,)
    assert (want_v > 0).all() and (want_t > 0).all()
    torch.testing.assert_close(shift.vision.double(), want_v, rtol=1e-4, atol=1e-7)
    torch.testing.assert_close(shift.text.double(), want_t, rtol=1e-4, atol=1e-7)


@pytest.mark.parametrize("name,vision_zero,text_zero", [
    ("ZeroshotCLIP", True, True), ("VPT", False, True), ("CoOp", True, False),
    ("LPT", True, False), ("CoCoOp", True, False), ("IVLP", False, False)])
def test_feature_shift_zero_without_prompts(make_cfg, classnames, images, name, vision_zero,
                                            text_zero):
    _, model = build(make_cfg, name, classnames)
    shift = model.feature_shift(images)
    assert shift.vision.shape == (3,) and shift.text.shape == (3,)
    assert torch.equal(shift.vision, torch.zeros(3)) == vision_zero
    assert torch.equal(shift.text, torch.zeros(3)) == text_zero
    if not vision_zero:
        assert (shift.vision > 0).all()
    if not text_zero:
        assert (shift.text > 0).all()


def test_text_shift_ignores_tokens_after_eot(make_cfg, classnames, images):
    _, model = build(make_cfg, "MaPLe", classnames)
    eot = class_tokens("a photo of a {}.", classnames).argmax(-1)
    before = model.feature_shift(images).text
    feats = model.encode_text()[0].detach()
    g = torch.Generator().manual_seed(9)
    with torch.no_grad():
        for c, e in enumerate(eot.tolist()):
            model.token_embeds[c, e + 1:] = torch.randn(77 - e - 1, 48, generator=g)
    after = model.feature_shift(images).text
    torch.testing.assert_close(after, before, atol=1e-6, rtol=1e-6)
    torch.testing.assert_close(model.encode_text()[0].detach(), feats, atol=1e-6, rtol=1e-6)
    with torch.no_grad():  # a token before EOT does count
        model.token_embeds[:, int(eot.min()) - 1] += 1.0
    assert not torch.allclose(model.feature_shift(images).text, before, rtol=1e-3)


@pytest.mark.parametrize("prompt_free", ["grad", "recompute", "no_grad"])
@pytest.mark.parametrize("name", ["IVLP", "MaPLe"])
def test_shift_gradients_equal_independent_gradients(make_cfg, classnames, images, ref, name,
                                                     prompt_free):
    """Gradients of the traced shift reach the prompts of earlier layers, through both the
    prompted and the prompt-free pass: equal to autograd through the reference computation.
    The same when the prompt-free pass is recomputed in backward (FS.PROMPT_FREE recompute).
    Without gradient through it (FS.PROMPT_FREE no_grad): equal to the reference with that pass
    detached, and not to the exact gradient."""
    cfg, model = build(make_cfg, name, classnames)
    model.prompt_free = prompt_free
    params = {k: p for k, p in model.named_parameters() if p.requires_grad}
    shift = model.encode(images, trace=True).shift
    w = torch.tensor([1.0, -2.0, 3.0])
    (shift.vision * w).sum().backward(retain_graph=True)
    got_v = {k: p.grad.clone() for k, p in params.items() if p.grad is not None}
    model.zero_grad()
    (shift.text * w).sum().backward()
    got_t = {k: p.grad.clone() for k, p in params.items() if p.grad is not None}
    model.zero_grad()

    # the last layer (past the depth) alone reaches the prompts of layers 0 and 1
    last = model.encode(images, trace=True).shift
    if name == "IVLP":
        v0, v1 = model.prompt_learner.vision_ctx, model.prompt_learner.vision_deep[0]
        t0, t1 = model.prompt_learner.ctx, model.prompt_learner.text_deep[0]
    else:
        v0 = t0 = model.prompt_learner.ctx
        v1 = t1 = model.prompt_learner.compound_prompts_text[0]
    gv = torch.autograd.grad(last.vision[2], [v0, v1], retain_graph=True)
    gt = torch.autograd.grad(last.text[2], [t0, t1])
    assert all(g.abs().sum() > 0 for g in gv + gt)

    _, img, txt, s = reference(name, model, cfg, classnames, images, ref)

    def ref_grads(detach_plain):
        v = ref.vision_shift(model.clip, img, detach_plain=detach_plain)
        t = ref.text_shift(model.clip, txt, s["n"], detach_plain=detach_plain)
        return (torch.autograd.grad((v.float() * w).sum(), list(params.values()),
                                    allow_unused=True, retain_graph=True),
                torch.autograd.grad((t.float() * w).sum(), list(params.values()),
                                    allow_unused=True, retain_graph=True))

    want_v, want_t = ref_grads(detach_plain=prompt_free == "no_grad")
    for (k, _), gv_, gt_ in zip(params.items(), want_v, want_t):
        for got, want in ((got_v, gv_), (got_t, gt_)):
            if want is None or want.abs().sum() == 0:
                assert k not in got or got[k].abs().sum() == 0, k
            else:
                torch.testing.assert_close(got[k], want, rtol=1e-3, atol=1e-6)
    if prompt_free == "no_grad":  # the approximation is a different gradient
        exact_v, _ = ref_grads(detach_plain=False)
        assert any(not torch.allclose(got_v[k], e, rtol=1e-2, atol=0)
                   for k, e in zip(params, exact_v) if k in got_v and e is not None)


# ------------------------------------------------------------------ PromptSRC
def test_promptsrc_templates():
    assert len(PROMPTSRC_TEMPLATES) == 60 == len(set(PROMPTSRC_TEMPLATES))
    assert PROMPTSRC_TEMPLATES[0] == "a photo of a {}."
    assert all(t.count("{}") == 1 for t in PROMPTSRC_TEMPLATES)


def test_promptsrc_loss_terms(make_cfg, classnames, images, ref):
    cfg, model = build(make_cfg, "PromptSRC", classnames)
    labels = torch.tensor([2, 0])
    total, summary = numbers(model.loss({"img": images, "label": labels}))
    cm = model.clip
    with torch.no_grad():
        logits, img, txt, _ = reference("PromptSRC", model, cfg, classnames, images, ref)
        zs_img = F.normalize(cm.encode_image(images), dim=-1)
        ensemble = torch.stack([cm.encode_text(class_tokens(t, classnames))
                                for t in PROMPTSRC_TEMPLATES]).mean(0)
        fixed = F.normalize(ensemble, dim=-1)
        zs_logits = cm.logit_scale.exp() * zs_img @ fixed.t()
        log_p = logits - logits.logsumexp(1, keepdim=True)
        log_q = zs_logits - zs_logits.logsumexp(1, keepdim=True)
        ce = -log_p[torch.arange(2), labels].mean()
        kl = (log_q.exp() * (log_q - log_p)).sum() / logits.numel()
        l1_text = (F.normalize(txt.features, dim=-1) - fixed).abs().mean() * 25
        l1_image = (F.normalize(img.features, dim=-1) - zs_img).abs().mean() * 10
    torch.testing.assert_close(model.fixed_embeddings, ensemble, atol=1e-5, rtol=1e-5)
    assert summary["ce"] == pytest.approx(ce.item(), rel=1e-5)
    assert summary["scl_logits"] == pytest.approx(kl.item(), rel=1e-4, abs=1e-7)
    assert summary["scl_text"] == pytest.approx(l1_text.item(), rel=1e-5)
    assert summary["scl_image"] == pytest.approx(l1_image.item(), rel=1e-5)
    assert kl.item() > 1e-4 and l1_text.item() > 1e-3 and l1_image.item() > 1e-3
    assert total.item() == pytest.approx((ce + kl + l1_text + l1_image).item(), rel=1e-5)
    # the weights are the config's
    cfg2, model2 = build(make_cfg, "PromptSRC", classnames, "TRAINER.PROMPTSRC.TEXT_LOSS_WEIGHT",
                         2.0, "TRAINER.PROMPTSRC.IMAGE_LOSS_WEIGHT", 3.0)
    _, s2 = numbers(model2.loss({"img": images, "label": labels}))
    assert s2["scl_text"] == pytest.approx(l1_text.item() * 2 / 25, rel=1e-5)
    assert s2["scl_image"] == pytest.approx(l1_image.item() * 3 / 10, rel=1e-5)


def test_gpa_weights_follow_the_gaussian():
    w = gpa_weights(20, 15.0, 1.0)
    assert len(w) == 20 and sum(w) == pytest.approx(1.0, abs=1e-12)
    dens = [math.exp(-0.5 * (e + 1 - 15.0) ** 2) for e in range(20)]
    for a, d in zip(w, dens):
        assert a == pytest.approx(d / sum(dens), rel=1e-9, abs=1e-300)
    assert max(range(20), key=w.__getitem__) == 14  # epoch index 14 = epoch 15
    assert w[13] == pytest.approx(w[15]) and w[13] / w[14] == pytest.approx(math.exp(-0.5))
    w = gpa_weights(4, 3.0, 1.5)
    dens = [math.exp(-0.5 * ((e + 1 - 3.0) / 1.5) ** 2) for e in range(4)]
    assert w == pytest.approx([d / sum(dens) for d in dens], rel=1e-12)


def _epoch_prompts(model, epoch):
    g = torch.Generator().manual_seed(1000 + epoch)
    with torch.no_grad():
        for k, p in sorted(model.named_parameters()):
            if p.requires_grad:
                p.copy_(torch.randn(p.shape, generator=g))
    return {k: p.detach().clone() for k, p in model.named_parameters() if p.requires_grad}


def test_gpa_aggregates_the_epoch_prompts(make_cfg, classnames, capsys):
    cfg, model = build(make_cfg, "PromptSRC", classnames, *GPA)
    max_epoch = cfg.OPTIM.MAX_EPOCH
    clip_before = {k: v.clone() for k, v in model.clip.state_dict().items()}
    dens = [math.exp(-0.5 * ((e + 1 - 3.0) / 1.5) ** 2) for e in range(max_epoch)]
    weights = [d / sum(dens) for d in dens]
    per_epoch = []
    for epoch in range(max_epoch):
        model.on_epoch_start(epoch, max_epoch)
        per_epoch.append(_epoch_prompts(model, epoch))
        model.on_epoch_end(epoch, max_epoch)
        if epoch < max_epoch - 1:  # nothing replaced before the last epoch
            for k, p in model.named_parameters():
                if k in per_epoch[-1]:
                    assert torch.equal(p, per_epoch[-1][k])
    for k, p in model.named_parameters():
        if p.requires_grad:
            want = sum(w * prompts[k] for w, prompts in zip(weights, per_epoch))
            torch.testing.assert_close(p.detach(), want, atol=1e-6, rtol=1e-6)
    for k, v in model.clip.state_dict().items():
        assert torch.equal(v, clip_before[k]), k
    assert "GPA" in capsys.readouterr().out


def test_gpa_resumes_from_saved_state(make_cfg, classnames):
    """The running sum is saved with the prompts: stopping after epoch 1 and resuming in a new
    model gives the same aggregate as one uninterrupted run."""
    cfg, a = build(make_cfg, "PromptSRC", classnames, *GPA)
    _, b = build(make_cfg, "PromptSRC", classnames, *GPA, seed=5)
    for epoch in range(4):
        if epoch == 2:
            b.load_state(a.state_to_save())
        _epoch_prompts(a, epoch)
        a.on_epoch_end(epoch, 4)
        if epoch >= 2:
            _epoch_prompts(b, epoch)
            b.on_epoch_end(epoch, 4)
    for (k, pa), (_, pb) in zip(a.named_parameters(), b.named_parameters()):
        if pa.requires_grad:
            torch.testing.assert_close(pa, pb, atol=1e-6, rtol=0)


# ------------------------------------------------------------------ checkpoints
@pytest.mark.parametrize("name", PROMPTED)
def test_state_round_trips_to_other_classes(make_cfg, classnames, new_classnames, images, ref,
                                            tmp_path, name):
    cfg, base = build(make_cfg, name, classnames, seed=0)
    state = base.state_to_save()
    assert not any(k.startswith("clip.") for k in state)
    assert TRAINABLE[name] <= set(state)
    assert not {"token_embeds", "eot", "fixed_embeddings"} & set(state)
    torch.save(state, tmp_path / "prompts.pt")
    loaded = torch.load(tmp_path / "prompts.pt", weights_only=True)
    _, new = build(make_cfg, name, new_classnames, seed=1)  # other random prompts
    new.load_state(loaded)
    for k, p in base.named_parameters():
        if p.requires_grad:
            assert torch.equal(dict(new.named_parameters())[k], p), k
    with torch.no_grad():
        got = new(images)
        want, *_ = reference(name, base, cfg, new_classnames, images, ref)
    assert got.shape == (2, 4)
    torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("name", PROMPTED)
def test_load_state_errors_name_the_key(make_cfg, classnames, name):
    _, model = build(make_cfg, name, classnames)
    key = sorted(TRAINABLE[name])[0]
    state = model.state_to_save()
    bad = dict(state)
    shape = list(bad[key].shape)
    shape[-1] += 1
    bad[key] = torch.zeros(shape)
    with pytest.raises(restore.CheckpointError, match=re.escape(key)):
        model.load_state(bad)
    missing = {k: v for k, v in state.items() if k != key}
    with pytest.raises(restore.CheckpointError, match=re.escape(key)):
        model.load_state(missing)
    extra = dict(state, **{"prompt_learner.not_a_prompt": torch.zeros(1)})
    with pytest.raises(restore.CheckpointError, match="prompt_learner.not_a_prompt"):
        model.load_state(extra)
    # nothing was changed by the failed loads
    for k, v in model.state_to_save().items():
        if hasattr(v, "shape"):
            assert torch.equal(v, state[k]), k


def test_load_state_from_another_trainer_fails(make_cfg, classnames):
    _, maple = build(make_cfg, "MaPLe", classnames)
    _, ivlp = build(make_cfg, "IVLP", classnames)
    with pytest.raises(restore.CheckpointError, match="IVLP"):
        ivlp.load_state(maple.state_to_save())


def test_load_state_accepts_full_and_legacy_state_dicts(make_cfg, classnames, images):
    _, a = build(make_cfg, "MaPLe", classnames, seed=0)
    _, b = build(make_cfg, "MaPLe", classnames, seed=1)
    full = dict(a.state_dict())
    full["prompt_learner.token_prefix"] = torch.zeros(3, 1, 48)
    full["prompt_learner.token_suffix"] = torch.zeros(3, 74, 48)
    b.load_state(full)
    with torch.no_grad():
        torch.testing.assert_close(b(images), a(images), atol=0, rtol=0)


def test_coop_class_specific_context_cannot_change_classes(make_cfg, classnames, new_classnames):
    _, a = build(make_cfg, "CoOp", classnames, "TRAINER.COOP.CSC", True)
    assert a.prompt_learner.ctx.shape == (3, 3, 48)
    _, b = build(make_cfg, "CoOp", new_classnames, "TRAINER.COOP.CSC", True)
    with pytest.raises(restore.CheckpointError, match=r"prompt_learner\.ctx.*class-count"):
        b.load_state(a.state_to_save())


def test_coop_class_specific_context_logits(make_cfg, classnames, images, ref):
    _, model = build(make_cfg, "CoOp", classnames, "TRAINER.COOP.CSC", True)
    cm = model.clip
    tokens = class_tokens("X X X {}.", classnames)
    with torch.no_grad():
        txt = ref.text_forward(cm, tokens, [model.prompt_learner.ctx], 3)
        want = ref.logits(cm, cm.encode_image(images), txt.features)
        torch.testing.assert_close(model(images), want, atol=1e-5, rtol=1e-5)


# ------------------------------------------------------------------ precision
def _bf16_cpu_autocast_ok():
    try:
        with torch.autocast("cpu", dtype=torch.bfloat16):
            torch.ones(2, 2) @ torch.ones(2, 2)
        return True
    except Exception:  # pragma: no cover
        return False


@pytest.mark.skipif(not _bf16_cpu_autocast_ok(), reason="this torch has no CPU bf16 autocast")
@pytest.mark.parametrize("name", ["MaPLe", "CoCoOp", "PromptSRC"])
def test_bf16_autocast_forward_close_to_fp32(make_cfg, classnames, images, name):
    _, model = build(make_cfg, name, classnames)
    scale = model.clip.logit_scale.exp().item()
    with torch.no_grad():
        want = model(images)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            got = model(images)
            shift = model.feature_shift(images)
    assert torch.isfinite(got).all()
    assert torch.isfinite(shift.vision).all() and torch.isfinite(shift.text).all()
    # cosine similarities within bf16 precision
    torch.testing.assert_close(got.float() / scale, want / scale, atol=0.03, rtol=0)


@pytest.mark.skipif(not torch.cuda.is_available(),
                    reason="fp16 CLIP (clip.model.convert_weights) runs on CUDA only")
@pytest.mark.parametrize("name", METHOD_NAMES)
def test_fp16_clip_on_cuda(make_cfg, classnames, images, name):
    _, fp32 = build(make_cfg, name, classnames, seed=0)
    cfg = make_cfg(name)
    cm = restore.tiny_clip(0)
    convert_weights(cm)
    assert cm.visual.conv1.weight.dtype == torch.float16
    torch.manual_seed(0)
    model = restore.build_model(cfg, classnames, cm)
    model.load_state(fp32.state_to_save())
    model.cuda()
    fp32.cuda()
    images = images.cuda()
    scale = cm.logit_scale.exp().item()
    with torch.no_grad():
        got, want = model(images), fp32(images)
    assert got.dtype == torch.float32 and torch.isfinite(got).all()
    torch.testing.assert_close(got / scale, want / scale, atol=0.01, rtol=0)
    shift = model.feature_shift(images)
    ref_shift = fp32.feature_shift(images)
    torch.testing.assert_close(shift.vision, ref_shift.vision, atol=2e-3, rtol=0.05)
    torch.testing.assert_close(shift.text, ref_shift.text, atol=2e-3, rtol=0.05)
    if name == "ZeroshotCLIP":
        return
    before = {k: v.clone() for k, v in cm.state_dict().items()}
    loss, _ = numbers(model.loss({"img": images, "label": torch.tensor([0, 1], device="cuda")}))
    loss.backward()
    for k, p in model.named_parameters():
        if k in TRAINABLE[name]:
            assert p.dtype == torch.float32 and torch.isfinite(p.grad).all(), k
        else:
            assert p.grad is None, k
    assert all(torch.equal(v, before[k]) for k, v in cm.state_dict().items())
