"""restore.legacy: checkpoints of the original CoOp-lineage trainers load into our methods.

The original states are fabricated in exactly the originals' key layout (docs/REPRODUCING.md section 8; the
public CoOp, multimodal-prompt-learning, PromptSRC and RESTORE_ trainers): the registered module's
`state_dict()` with the prompts where those trainers keep them, their fp16 tensors, the frozen CLIP
weights, the class-dependent token buffers and PromptSRC's frozen ZS_image_encoder. Loading the
converted state must give the same logits as setting the prompts directly, also for other classes
(base -> new). No Dassl needed.
"""
import copy

import pytest
import torch
from torch import nn

import restore
from restore.methods import registry
from restore.legacy import (convert_state_dict, describe_mismatch, main, original_layout,
                            to_original_state_dict, unwrap)

BASE = ["red circle", "blue square", "green triangle"]
NEW = ["striped star", "dotted moon", "plain_hexagon", "tiny dot"]
DEPTH = 3


def make_cfg(name, release=False):
    cfg = restore.get_cfg_default()
    cfg.TRAINER.NAME = name
    cfg.DATASET.NAME = "OxfordPets"
    cfg.merge_from_list(list(registry.get(name).tiny))  # fits the tiny CLIP (MMA's adapted blocks)
    cfg.TRAINER.COOP.N_CTX = cfg.TRAINER.COCOOP.N_CTX = 4
    cfg.TRAINER.LPT.PROMPT_DEPTH_TEXT = DEPTH
    cfg.TRAINER.VPT.PROMPT_DEPTH_VISION = DEPTH
    cfg.TRAINER.IVLP.PROMPT_DEPTH_TEXT = cfg.TRAINER.IVLP.PROMPT_DEPTH_VISION = DEPTH
    cfg.TRAINER.MAPLE.PROMPT_DEPTH = DEPTH
    cfg.TRAINER.COPROMPT.PROMPT_DEPTH = DEPTH
    cfg.TRAINER.PROMPTSRC.PROMPT_DEPTH_TEXT = cfg.TRAINER.PROMPTSRC.PROMPT_DEPTH_VISION = DEPTH
    cfg.TRAINER.TCP.INSERT_LAYER = DEPTH - 1  # a block index: the last of the tiny CLIP's 3
    if release:
        cfg.TRAINER.RESTORE.FS.DEFINITION = "release"
        cfg.TRAINER.RESTORE.SURGERY.MODE = "release"
    return cfg


def build(name, classes, seed=0, release=False):
    torch.manual_seed(seed)
    model = restore.build_model(make_cfg(name, release), classes, restore.tiny_clip(seed=1))
    return model.eval()


# ----------------------------------------------------------- the originals' layouts, fabricated
def _half(t):
    return t.detach().clone().half()


def _custom_clip(model):
    """The frozen part of the originals' CustomCLIP: image_encoder = clip.visual, text_encoder =
    TextEncoder(clip) (transformer, positional_embedding, ln_final, text_projection),
    logit_scale; weights in fp16 as OpenAI's build_model leaves them."""
    clip_model = copy.deepcopy(model.clip).half()
    custom = nn.Module()
    custom.prompt_learner = nn.Module()
    custom.image_encoder = clip_model.visual
    custom.text_encoder = nn.Module()
    custom.text_encoder.transformer = clip_model.transformer
    custom.text_encoder.positional_embedding = clip_model.positional_embedding
    custom.text_encoder.ln_final = clip_model.ln_final
    custom.text_encoder.text_projection = clip_model.text_projection
    custom.logit_scale = clip_model.logit_scale
    return custom


def _class_buffers(module, n_ctx, width, n_classes=5):
    module.register_buffer("token_prefix", torch.randn(n_classes, 1, width).half())
    module.register_buffer("token_suffix", torch.randn(n_classes, 76 - n_ctx, width).half())


def original_state_dict(trainer, model):
    """What the original `trainer`'s checkpoint["state_dict"] holds for prompts equal to `model`'s
    (fp16 where the originals keep fp16)."""
    pl = model.prompt_learner
    width = model.text_encoder.width
    if trainer in ("CoOp", "CoCoOp"):  # only the prompt learner is registered
        learner = nn.Module()
        learner.ctx = nn.Parameter(_half(pl.ctx))
        _class_buffers(learner, pl.ctx.shape[-2], width)
        if trainer == "CoCoOp":
            learner.meta_net = copy.deepcopy(pl.meta_net).half()
        return learner.state_dict()

    custom = _custom_clip(model)
    learner = custom.prompt_learner
    if trainer in ("MaPLe", "RESTORE_m", "MaPLe_FSA"):
        learner.ctx = nn.Parameter(_half(pl.ctx))  # CLIP dtype
        learner.proj = copy.deepcopy(pl.proj).half()  # explicitly .half()
        learner.compound_prompts_text = copy.deepcopy(pl.compound_prompts_text)  # fp32
        learner.compound_prompt_projections = copy.deepcopy(pl.compound_prompt_projections)
        _class_buffers(learner, pl.ctx.shape[0], width)
        if trainer == "MaPLe_FSA":
            for side in ("text", "visual"):
                ours = getattr(model, f"{side}_adapter")
                calibrator = nn.Module()
                calibrator.FFN = nn.Sequential(copy.deepcopy(ours.fc1), nn.Identity(),
                                               copy.deepcopy(ours.fc2))
                calibrator.post_ln = copy.deepcopy(ours.ln)
                setattr(custom, f"{side}_adapter", calibrator.half())
            vis_r, text_r = model.calib_ratio.tolist()
            custom.text_cali_ratio = nn.Parameter(torch.tensor(text_r, dtype=torch.float64))
            custom.vis_cali_ratio = nn.Parameter(torch.tensor(vis_r, dtype=torch.float64))
        return custom.state_dict()

    # IVLP, VPT, PromptSRC (and our LPT / RESTORE_p prompts in the IVLP layout)
    if hasattr(pl, "ctx"):
        learner.ctx = nn.Parameter(_half(pl.ctx))
        _class_buffers(learner, pl.ctx.shape[0], width)
    if hasattr(pl, "vision_ctx"):
        custom.image_encoder.VPT = nn.Parameter(pl.vision_ctx.detach().clone())
        for i, p in enumerate(pl.vision_deep, start=1):
            block = custom.image_encoder.transformer.resblocks[i]
            block.VPT_shallow = nn.Parameter(p.detach().clone())
    if hasattr(pl, "text_deep"):
        for i, p in enumerate(pl.text_deep, start=1):
            block = custom.text_encoder.transformer.resblocks[i]
            block.VPT_shallow = nn.Parameter(p.detach().clone())
    if trainer in ("PromptSRC", "RESTORE_p"):
        learner.ZS_image_encoder = copy.deepcopy(model.clip.visual).half()
    if trainer == "VPT":  # the original VPT's CustomCLIP has no prompt learner at all
        del custom.prompt_learner
    return custom.state_dict()


def round_like_original(model):
    """Round the prompts the originals store in fp16, so that both sides hold the same values."""
    pl = getattr(model, "prompt_learner", None)
    with torch.no_grad():
        fp16 = [pl.ctx] if pl is not None and hasattr(pl, "ctx") else []
        for name in ("proj", "meta_net"):
            if hasattr(pl, name):
                fp16 += list(getattr(pl, name).parameters())
        for adapter in ("text_adapter", "visual_adapter"):
            if hasattr(model, adapter):
                fp16 += list(getattr(model, adapter).parameters())
        for p in fp16:
            p.copy_(p.half().float())


def perturb(model, seed=5):
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.trainable_parameters():
            p.add_(torch.randn(p.shape, generator=g) * 0.05)
    round_like_original(model)
    return model


def learned_keys(model):
    """The keys of state_to_save() (less the optional extra state, e.g. PromptSRC's GPA sum)."""
    return {k for k in model.state_to_save() if not k.endswith("_extra_state")}


@pytest.fixture(scope="module")
def images():
    return torch.randn(3, 3, 32, 32, generator=torch.Generator().manual_seed(7))


CASES = [("CoOp", "CoOp"), ("CoCoOp", "CoCoOp"), ("VPT", "VPT"), ("IVLP", "IVLP"),
         ("MaPLe", "MaPLe"), ("PromptSRC", "PromptSRC"), ("LPT", "IVLP"),
         ("RESTORE_m", "MaPLe")]


@pytest.mark.parametrize("ours,original", CASES)
def test_original_checkpoint_gives_same_logits(ours, original, images):
    trained = perturb(build(ours, BASE))
    state = original_state_dict(original, trained)
    if ours == "RESTORE_m":  # MaPLe prompts only: complete with the adapters and EMA
        state.update({k: v for k, v in trained.state_to_save().items()
                      if not k.startswith("prompt_learner.")})
    converted = convert_state_dict(ours, state)
    assert set(converted) == learned_keys(trained)
    assert all(v.dtype != torch.float16 for v in converted.values())

    # Same classes: the same logits as the trained model itself.
    loaded = build(ours, BASE, seed=11)
    loaded.load_state(converted, source="original")
    with torch.no_grad():
        assert torch.allclose(loaded(images), trained(images), atol=1e-5)

    # Other classes (base -> new): the same logits as setting the prompts directly.
    on_new = build(ours, NEW, seed=12)
    on_new.load_state(convert_state_dict(ours, state), source="original")
    direct = build(ours, NEW, seed=13)
    with torch.no_grad():
        for key, value in trained.state_to_save().items():
            if torch.is_tensor(value):
                direct.get_buffer(key).copy_(value) if key in dict(direct.named_buffers()) \
                    else direct.get_parameter(key).copy_(value)
        assert torch.allclose(on_new(images), direct(images), atol=1e-6)
        assert on_new(images).shape == (3, len(NEW))


def test_restore_m_from_official_release(images):
    """MaPLe_FSA (official RESTORE) -> RESTORE_m with the release's calibrator and ratios."""
    trained = perturb(build("RESTORE_m", BASE, release=True))
    with torch.no_grad():
        trained.calib_ratio.copy_(torch.tensor([0.013, 0.107]))
        trained.calib_updated.fill_(True)
    state = original_state_dict("MaPLe_FSA", trained)
    assert original_layout(state) == "MaPLe_FSA"
    assert "text_adapter.FFN.0.weight" in state and "vis_cali_ratio" in state
    converted = convert_state_dict("RESTORE_m", state)
    assert set(converted) == learned_keys(trained)
    loaded = build("RESTORE_m", NEW, seed=3, release=True)
    loaded.load_state(converted, source="MaPLe_FSA")
    assert torch.allclose(loaded.calib_ratio, trained.calib_ratio)
    direct = build("RESTORE_m", NEW, seed=4, release=True)
    direct.load_state(trained.state_to_save())
    with torch.no_grad():
        assert torch.allclose(loaded(images), direct(images), atol=1e-6)


@pytest.mark.parametrize("name", registry.names())
def test_our_checkpoints_pass_unchanged(name):
    model = perturb(build(name, BASE))
    ours = model.state_to_save()
    converted = convert_state_dict(name, ours)
    assert list(converted) == list(ours)
    assert all(converted[k] is ours[k] for k in ours)
    assert original_layout(ours) is None
    # A whole checkpoint dict, and DataParallel's prefix, are unwrapped.
    wrapped = {"state_dict": {f"module.{k}": v for k, v in ours.items()}, "epoch": 3}
    assert list(convert_state_dict(name, wrapped)) == list(ours)
    # Our full state_dict (frozen CLIP included) also loads.
    build(name, NEW, seed=2).load_state(convert_state_dict(name, model.state_dict()))


def test_dropped_keys_and_layouts():
    model = build("PromptSRC", BASE)
    state = original_state_dict("PromptSRC", model)
    assert any(k.startswith("prompt_learner.ZS_image_encoder.") for k in state)
    assert "image_encoder.transformer.resblocks.1.VPT_shallow" in state
    assert "text_encoder.transformer.resblocks.2.VPT_shallow" in state
    assert original_layout(state) == "IVLP"
    converted = convert_state_dict("PromptSRC", state)
    assert sorted(converted) == sorted([
        "prompt_learner.ctx", "prompt_learner.vision_ctx", "prompt_learner.text_deep.0",
        "prompt_learner.text_deep.1", "prompt_learner.vision_deep.0",
        "prompt_learner.vision_deep.1"])
    coop = original_state_dict("CoOp", build("CoOp", BASE))
    assert set(coop) == {"ctx", "token_prefix", "token_suffix"}
    assert original_layout(coop) == "CoOp"
    assert set(convert_state_dict("CoOp", coop)) == {"prompt_learner.ctx"}
    assert original_layout(original_state_dict("MaPLe", build("MaPLe", BASE))) == "MaPLe"
    assert original_layout(original_state_dict("VPT", build("VPT", BASE))) == "IVLP"


def test_wrong_trainer_names_the_original():
    state = original_state_dict("MaPLe", build("MaPLe", BASE))
    model = build("IVLP", BASE)
    with pytest.raises(restore.CheckpointError, match="missing keys"):
        model.load_state(convert_state_dict("IVLP", state), source="x")
    assert "original MaPLe trainer" in describe_mismatch("IVLP", state)
    assert describe_mismatch("MaPLe", state) == ""


def test_original_file_with_pickled_scheduler_loads(tmp_path, images):
    """An original Dassl checkpoint pickles the scheduler object (torch >= 2.6 refuses it with
    weights_only=True); it still loads and converts, without Dassl installed."""
    from restore.engine.checkpoint import load_checkpoint

    trained = perturb(build("MaPLe", BASE))
    optim = torch.optim.SGD([nn.Parameter(torch.zeros(1))], lr=0.1)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(optim, T_max=5.0)
    path = tmp_path / "model.pth.tar-5"
    torch.save({"state_dict": original_state_dict("MaPLe", trained), "epoch": 5,
                "optimizer": optim.state_dict(), "scheduler": {"successor": sched},
                "val_result": None}, path)
    checkpoint = load_checkpoint(str(path))
    assert checkpoint["epoch"] == 5
    loaded = build("MaPLe", BASE, seed=9)
    loaded.load_state(convert_state_dict("MaPLe", unwrap(checkpoint)))
    with torch.no_grad():
        assert torch.allclose(loaded(images), trained(images), atol=1e-5)


# ------------------------------------------------------------------- the other direction: export
_FROZEN = ("image_encoder.", "text_encoder.", "prompt_learner.ZS_image_encoder.")


def original_learned(state):
    """The learned entries of a fabricated original state: no frozen CLIP, class buffers, logit_scale."""
    out = {}
    for k, v in state.items():
        if k.endswith("token_prefix") or k.endswith("token_suffix") or k == "logit_scale":
            continue
        if k.startswith(_FROZEN) and not k.endswith("VPT") and not k.endswith("VPT_shallow"):
            continue
        out[k] = v
    return out


@pytest.mark.parametrize("ours,original", CASES[:-1] + [("MaPLe_FSA", "MaPLe_FSA")])
def test_export_gives_the_original_layout_and_round_trips(ours, original, images):
    release = ours == "MaPLe_FSA"
    name = "RESTORE_m" if release else ours
    trained = perturb(build(name, BASE, release=release))
    exported = to_original_state_dict(ours, trained.state_to_save())
    expected = original_learned(original_state_dict(original, trained))
    assert set(exported) == set(expected)  # every learned key, under the original's name
    for k, v in expected.items():
        assert exported[k].dtype == torch.float32 and torch.equal(exported[k], v.float()), k
    loaded = build(name, NEW, seed=21, release=release)
    loaded.load_state(convert_state_dict(ours, exported), source="exported")
    direct = build(name, NEW, seed=22, release=release)
    direct.load_state(trained.state_to_save())
    with torch.no_grad():
        assert torch.allclose(loaded(images), direct(images), atol=1e-6)


def test_export_refuses_what_no_original_holds():
    with pytest.raises(ValueError, match="only as its release variant"):
        to_original_state_dict("RESTORE_m", build("RESTORE_m", BASE).state_to_save())
    with pytest.raises(ValueError, match="No original trainer holds RESTORE_p"):
        to_original_state_dict("RESTORE_p", build("RESTORE_p", BASE).state_to_save())
    with pytest.raises(ValueError, match="already in an original"):
        to_original_state_dict("MaPLe", original_state_dict("MaPLe", build("MaPLe", BASE)))


def test_export_checkpoint_file(tmp_path, capsys):
    from restore.engine.checkpoint import save_checkpoint
    model = perturb(build("IVLP", BASE))
    save_checkpoint({"state_dict": model.state_to_save(), "epoch": 3, "optimizer": None,
                     "scheduler": None, "val_result": None}, str(tmp_path / "run" / "VLPromptLearner"))
    main(["--trainer", "IVLP", "--model-dir", str(tmp_path / "run"), "--output-dir", str(tmp_path / "orig")])
    path = tmp_path / "orig" / "VLPromptLearner" / "model.pth.tar-3"
    saved = torch.load(path, weights_only=True)  # plain data: loads anywhere
    assert saved["epoch"] == 3 and "image_encoder.transformer.resblocks.2.VPT_shallow" in saved["state_dict"]
    with pytest.raises(SystemExit, match="No model at"):
        main(["--trainer", "MaPLe", "--model-dir", str(tmp_path / "run"), "--output-dir", str(tmp_path / "x")])
