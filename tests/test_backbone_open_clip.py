"""open_clip backbones (optional dependency): small random models built by open_clip's own
factory from tiny configs (no download), against open_clip's encode_image / encode_text and
against its blocks called by hand."""
import functools
import json
import os

import pytest
import torch
import torch.nn.functional as F

import restore
from restore.adapters import UnsupportedBackbone, adapter_for
from restore.methods import registry
from restore.backbone import BackboneError, freeze
from restore.prompting import PromptedImageEncoder, PromptedTextEncoder

from test_engine_fakes import ROOT, make_oxford_pets

open_clip = pytest.importorskip("open_clip")

VISION = dict(image_size=32, layers=2, width=64, patch_size=8, head_width=32)
TEXT = dict(context_length=77, vocab_size=49408, width=48, heads=2, layers=2)
CONFIGS = {
    # a plain open_clip CLIP: batch-first blocks, mask on the model, Parameter projections
    "restore-test-vit": dict(embed_dim=32, vision_cfg=VISION, text_cfg=TEXT),
    # CustomTextCLIP: LayerScale in every block, Identity ln_pre, a Linear text projection,
    # eos pooling, its own context length 32
    "restore-test-custom": dict(
        embed_dim=32, custom_text=True,
        vision_cfg=dict(VISION, ls_init_value=0.1, no_ln_pre=True),
        text_cfg=dict(TEXT, context_length=32, proj_bias=True, pool_type="eos", eos_id=49407,
                      ls_init_value=0.1)),
    "restore-test-avg": dict(embed_dim=32, vision_cfg=dict(VISION, pool_type="avg"),
                             text_cfg=TEXT),
    "restore-test-rn": dict(embed_dim=32, vision_cfg=dict(image_size=64, layers=[1, 1, 1, 1],
                                                           width=8), text_cfg=TEXT),
    # a timm image tower (open_clip's TimmModel; needs timm, which open_clip installs)
    "restore-test-timm": dict(embed_dim=32, vision_cfg=dict(
        timm_model_name="resnet18", timm_model_pretrained=False, timm_pool="avg",
        timm_proj="linear", image_size=32), text_cfg=TEXT),
    "restore-test-coca-text": dict(embed_dim=32, custom_text=True, vision_cfg=VISION,
                                   text_cfg=dict(TEXT, embed_cls=True)),
}
CLASSNAMES = ["cat", "golden_retriever", "sports car"]


@pytest.fixture(scope="module", autouse=True)
def tiny_configs(tmp_path_factory):
    folder = tmp_path_factory.mktemp("open_clip_configs")
    for name, cfg in CONFIGS.items():
        (folder / f"{name}.json").write_text(json.dumps(cfg))
    open_clip.add_model_config(str(folder))


@functools.lru_cache(maxsize=None)
def tiny(name, seed=0):
    """A frozen random model (shared between tests: nothing here changes a frozen CLIP)."""
    return build(name, seed)


def build(name, seed=0):
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return freeze(open_clip.create_model(name))


def images_for(model, n=2):
    size = adapter_for(model).image_resolution
    return torch.randn(n, 3, size, size, generator=torch.Generator().manual_seed(3))


def tokens_for(model, texts):  # open_clip's own tokenizer call, not the adapter's
    return open_clip.tokenize(texts, context_length=model.context_length)


# ------------------------------------------------------------------ prompt-free = open_clip
@pytest.mark.parametrize("name", ["restore-test-vit", "restore-test-custom", "restore-test-avg",
                                  "restore-test-rn", "restore-test-timm"])
def test_prompt_free_features_equal_open_clip(name):
    if name == "restore-test-timm":
        pytest.importorskip("timm")
    model = tiny(name)
    images = images_for(model)
    tokens = tokens_for(model, ["a cat", "a big golden retriever on the grass."])
    enc_i, enc_t = PromptedImageEncoder(model), PromptedTextEncoder(model)
    with torch.no_grad():
        image, _ = enc_i(images)
        text, _ = enc_t(enc_t.embed(tokens), enc_t.eot_index(tokens))
        torch.testing.assert_close(image, model.encode_image(images), atol=1e-5, rtol=0)
        torch.testing.assert_close(text, model.encode_text(tokens), atol=1e-5, rtol=0)
    assert enc_t.context_length == CONFIGS[name]["text_cfg"]["context_length"]


# ------------------------------------------------------------------ prompts, by hand
def relative(omega, plain):  # per sample ||omega|| / ||plain||, mean over samples
    return (omega.flatten(1).norm(dim=1) / plain.flatten(1).norm(dim=1)).mean()


def hand_image(model, images, prompts):
    """open_clip's vision tower (batch-first) with prompts appended, each block called as
    block(x); returns (features, per-layer shift)."""
    v = model.visual
    x = v.conv1(images).flatten(2).transpose(1, 2)
    x = torch.cat([v.class_embedding.expand(x.shape[0], 1, -1), x], 1) + v.positional_embedding
    n = x.shape[1]
    x = v.ln_pre(torch.cat([x, prompts[0].expand(x.shape[0], -1, -1)], 1))
    shifts = []
    for layer, block in enumerate(v.transformer.resblocks):
        if layer > 0:
            x = torch.cat([x[:, :n], prompts[layer].expand(x.shape[0], -1, -1)], 1)
        y = block(x)
        shifts.append(relative(y[:, :n] - block(x[:, :n]), block(x[:, :n])))
        x = y
    return v.ln_post(x[:, 0]) @ v.proj, torch.stack(shifts)


def hand_text(model, tokens, prompts, n_slots):
    """open_clip's text tower on the full context, slots 1..n replaced at every layer; the
    prompt-free call drops the slots and uses the causal mask of the shorter length."""
    tower = getattr(model, "text", model)
    if getattr(tower, "pool_type", "argmax") == "eos":  # CustomTextCLIP's TextTransformer
        eot = (tokens == tower.eos_id).int().argmax(-1)
    else:
        eot = tokens.argmax(-1)
    x = tower.token_embedding(tokens)
    mask = tower.attn_mask
    t = x.shape[1]
    valid = (torch.arange(t - n_slots)[None, :] <= (eot - n_slots)[:, None]).unsqueeze(-1)
    shifts = []
    for layer, block in enumerate(tower.transformer.resblocks):
        p = prompts[layer].expand(x.shape[0], -1, -1)
        x = torch.cat([x[:, :1], p, x[:, 1 + n_slots:]], 1)
        if layer == 0:
            x = x + tower.positional_embedding
        y = block(x, attn_mask=mask)
        drop = torch.cat([x[:, :1], x[:, 1 + n_slots:]], 1)
        plain = block(drop, attn_mask=mask[: t - n_slots, : t - n_slots])
        prompted = torch.cat([y[:, :1], y[:, 1 + n_slots:]], 1)
        shifts.append(relative((prompted - plain) * valid, plain * valid))
        x = y
    x = tower.ln_final(x)[torch.arange(x.shape[0]), eot]
    proj = tower.text_projection
    return (proj(x) if isinstance(proj, torch.nn.Module) else x @ proj), torch.stack(shifts)


@pytest.mark.parametrize("name", ["restore-test-vit", "restore-test-custom"])
def test_deep_prompts_and_feature_shift_against_hand_called_blocks(name):
    model = tiny(name)
    g = torch.Generator().manual_seed(5)
    vp = [torch.randn(3, 64, generator=g) for _ in range(2)]
    tp = [torch.randn(2, 48, generator=g) for _ in range(2)]
    images = images_for(model)
    tokens = tokens_for(model, ["X X cat.", "X X a big golden retriever."])
    enc_i, enc_t = PromptedImageEncoder(model), PromptedTextEncoder(model)
    with torch.no_grad():
        image, v_shift = enc_i(images, vp, trace=True)
        text, t_shift = enc_t(enc_t.embed(tokens), enc_t.eot_index(tokens), tp, 2, trace=True)
        ref_image, ref_v = hand_image(model, images, vp)
        ref_text, ref_t = hand_text(model, tokens, tp, 2)
    torch.testing.assert_close(image, ref_image, atol=1e-5, rtol=0)
    torch.testing.assert_close(v_shift.mean(1), ref_v, atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(text, ref_text, atol=1e-5, rtol=0)
    torch.testing.assert_close(t_shift.mean(1), ref_t, atol=1e-5, rtol=1e-4)
    assert (v_shift > 0).all() and (t_shift > 0).all()


# ------------------------------------------------------------------ every method
def method_cfg(method, model):
    """The method's default config with its small test values (spec.tiny: CoPrompt's generated descriptions),
    its prompt depths fitted to the 2-layer model."""
    cfg = restore.get_cfg_default()
    cfg.TRAINER.NAME = method
    cfg.merge_from_list(list(registry.get(method).tiny))
    cfg.MODEL.BACKBONE.NAME = "open_clip:test"
    restore.fit_cfg_to_backbone(cfg, model)
    return cfg


# The support table, row by row: every registered method on the token-pooled ViTs (plain CLIP, and
# CustomTextCLIP with eos pooling, a Linear projection and LayerScale); the methods whose spec supports
# towers without token blocks ("resnet") on avg pooling, ResNet and timm towers.
SUPPORTED = ([(m, name) for name in ("restore-test-vit", "restore-test-custom") for m in registry.names()]
             + [(m, name) for name in ("restore-test-avg", "restore-test-rn", "restore-test-timm")
                for m in registry.supporting("resnet")])


@pytest.mark.parametrize("method,name", SUPPORTED)
def test_every_supported_method_takes_a_training_step(method, name):
    model_clip = tiny(name)
    torch.manual_seed(0)
    model = restore.build_model(method_cfg(method, model_clip), CLASSNAMES, model_clip)
    images, labels = images_for(model_clip, 3), torch.tensor([0, 1, 2])
    model.train()
    loss, summary = model.loss({"img": images, "label": labels})
    assert torch.isfinite(loss)
    params = model.trainable_parameters()
    if method == "ZeroshotCLIP":
        assert params == []
        return
    before = [p.detach().clone() for p in params]
    opt = torch.optim.SGD(params, lr=1.0)
    loss.backward()
    opt.step()
    assert any(not torch.equal(a, p) for a, p in zip(before, params))
    with torch.no_grad():
        assert model(images).shape == (3, 3)


@pytest.mark.parametrize("name,reason", [("restore-test-avg", "pools with pool_type 'avg'"),
                                         ("restore-test-rn", "(ModifiedResNet) has no token"),
                                         ("restore-test-timm", "(TimmModel) has no token")])
@pytest.mark.parametrize("method", ["VPT", "MaPLe", "RESTORE_p"])
def test_vision_prompts_refused(name, reason, method):
    if name == "restore-test-timm":
        pytest.importorskip("timm")
    with pytest.raises(UnsupportedBackbone) as err:
        restore.build_model(method_cfg(method, tiny(name)), CLASSNAMES, tiny(name))
    msg = str(err.value)
    assert msg.startswith(f"{method} puts prompts into the image encoder, which backbone "
                          f"'open_clip:test' (open_clip ")
    assert reason in msg and msg.endswith("methods that can use it: " + ", ".join(registry.supporting("resnet"))) \
        and "\n" not in msg


def test_text_towers_that_cannot_take_prompts_are_refused():
    with pytest.raises(UnsupportedBackbone, match="appended class token"):
        adapter_for(tiny("restore-test-coca-text"))

    class NoStartToken:  # e.g. a Hugging Face tokenizer without SOT
        def __call__(self, texts, context_length=77):
            return torch.ones(len(texts), context_length, dtype=torch.long)

    model = build("restore-test-vit")
    model.restore_tokenizer = NoStartToken()
    with pytest.raises(UnsupportedBackbone, match="no start token"):
        adapter_for(model)


# ------------------------------------------------------------------ loading
def test_open_clip_names(tmp_path):
    with pytest.raises(BackboneError, match="Unknown open_clip model 'No-Such-Model'"):
        restore.load_clip("open_clip:No-Such-Model/openai")
    with pytest.raises(BackboneError, match="names no weights.*MODEL.BACKBONE.PATH"):
        restore.load_clip("open_clip:ViT-B-16")
    with pytest.raises(BackboneError, match="has no weights 'nope' for ViT-B-16; tags:"):
        restore.load_clip("open_clip:ViT-B-16/nope")


def test_offline_loading_names_the_expected_file(tmp_path, monkeypatch):
    """HF_HUB_OFFLINE=1 and an empty cache: one message naming the hub file and the fix. (The
    hub reads the variable at import: its module constant is set too, for this process.)"""
    hub = pytest.importorskip("huggingface_hub")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(hub.constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(hub.constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    with pytest.raises(BackboneError) as err:
        restore.load_clip("open_clip:ViT-B-16/laion2b_s34b_b88k")
    msg = str(err.value)
    assert msg.startswith("Cannot load open_clip weights ViT-B-16/laion2b_s34b_b88k")
    assert "laion/CLIP-ViT-B-16-laion2B-s34B-b88K" in msg and "\n" not in msg
    assert msg.endswith("set MODEL.BACKBONE.PATH to it (keeping MODEL.BACKBONE.NAME "
                        "open_clip:ViT-B-16/laion2b_s34b_b88k).")


def test_coop_end_to_end_through_train_py_on_a_local_open_clip_checkpoint(tmp_path):
    import train
    original = tiny("restore-test-custom", seed=4)
    ckpt = tmp_path / "tiny_open_clip.pt"
    torch.save(original.state_dict(), ckpt)
    cfg = restore.get_cfg_default()
    cfg.MODEL.BACKBONE.NAME, cfg.MODEL.BACKBONE.PATH = "open_clip:restore-test-custom", str(ckpt)
    model = restore.build_backbone(cfg)
    for k, v in original.state_dict().items():
        assert torch.equal(model.state_dict()[k], v), k
    make_oxford_pets(str(tmp_path / "data"))
    out = tmp_path / "out"
    train.main(["--root", str(tmp_path / "data"), "--seed", "1", "--trainer", "CoOp",
                "--engine", "native",
                "--dataset-config-file", f"{ROOT}/configs/datasets/oxford_pets.yaml",
                "--config-file", f"{ROOT}/configs/trainers/CoOp/vit_b16_ep50.yaml",
                "--output-dir", str(out),
                "MODEL.BACKBONE.NAME", "open_clip:restore-test-custom",
                "MODEL.BACKBONE.PATH", str(ckpt), "INPUT.SIZE", "(32, 32)",
                "TRAINER.COOP.N_CTX", "4", "DATASET.NUM_SHOTS", "2", "OPTIM.MAX_EPOCH", "1",
                "DATALOADER.NUM_WORKERS", "0", "DATALOADER.TEST.BATCH_SIZE", "8",
                "USE_CUDA", "False"])
    assert (out / "prompt_learner" / "model.pth.tar-1").is_file()
    log = (out / "log.txt").read_text()
    assert "Loading CLIP (backbone: " in log and "* accuracy:" in log


def test_prompt_longer_than_the_model_context_is_refused():
    """open_clip's tokenizer truncates silently; the 32-token context of the CustomTextCLIP
    must stop a longer prompt with the message of the OpenAI path."""
    from restore.errors import UserError
    model = tiny("restore-test-custom")
    cfg = method_cfg("CoOp", model)
    cfg.TRAINER.COOP.N_CTX = 28
    with pytest.raises(UserError, match=r"Class name 'golden retriever' is too long: .* takes "
                                        r"33 tokens, more than the text encoder's 32"):
        restore.build_model(cfg, CLASSNAMES, model)


class _Runs:
    """A pickled object whose unpickling would run a shell command (what a crafted file holds)."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


@pytest.mark.parametrize("content", ["crafted", "random"])
def test_a_bad_local_weights_file_is_one_line(content, tmp_path):
    """MODEL.BACKBONE.PATH of an open_clip model: a crafted pickle is refused without running it (the line
    says what --trust-files does, never torch's advice to turn weights_only off); random bytes say the
    file is unreadable (not `IndexError: pop from empty list`)."""
    path, marker = tmp_path / "weights.pt", tmp_path / "ran"
    if content == "crafted":
        torch.save({"visual.proj": torch.zeros(2), "payload": _Runs(marker)}, path)
    else:
        path.write_bytes(bytes(torch.randint(0, 256, (4096,), generator=torch.Generator().manual_seed(0)).tolist()))
    cfg = restore.get_cfg_default()
    cfg.MODEL.BACKBONE.NAME, cfg.MODEL.BACKBONE.PATH = "open_clip:restore-test-custom", str(path)
    with pytest.raises(Exception) as info:
        restore.build_backbone(cfg)
    message = str(info.value)
    assert "\n" not in message and str(path) in message and "weights_only" not in message
    assert not marker.exists()
    if content == "crafted":
        assert type(info.value).__name__ == "UntrustedFileError" and "--trust-files" in message
    else:
        assert type(info.value).__name__ == "BackboneError" and "Cannot read open_clip" in message
