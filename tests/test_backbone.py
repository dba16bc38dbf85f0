"""restore.backbone: the tiny CLIP, and loading CLIP weights from names and files."""
import io
import os
import urllib.error

import clip
import pytest
import torch
from clip.model import CLIP

import restore
import restore.backbone as backbone

# OpenAI's build_model infers text heads as width // 64: files without dims need width 64.
PLAIN_DIMS = dict(transformer_width=64, transformer_heads=1)


@pytest.fixture
def plain_known(monkeypatch):
    """Plain files load only for OpenAI's shapes: let the small PLAIN_DIMS CLIP pass as one,
    to test the plain-file path without a 150M-parameter model."""
    shapes = backbone.weight_shapes(restore.tiny_clip(0, **PLAIN_DIMS).state_dict())
    monkeypatch.setitem(backbone.OPENAI_SHAPES, "tiny-plain", shapes)


def _assert_same_weights(model, expected):
    got, want = model.state_dict(), expected.state_dict()
    assert set(got) == set(want)
    for k, v in want.items():
        assert got[k].dtype == torch.float32, k
        assert torch.equal(got[k], v), k


def _assert_frozen_eval_fp32(model):
    assert isinstance(model, CLIP) and not model.training
    assert all(not p.requires_grad and p.dtype == torch.float32 for p in model.parameters())


# ------------------------------------------------------------------ tiny CLIP
def test_tiny_clip_dimensions(clip_model):
    cm = clip_model
    _assert_frozen_eval_fp32(cm)
    assert cm.visual.conv1.out_channels == 64 and cm.ln_final.weight.shape == (48,)
    assert len(cm.visual.transformer.resblocks) == 3 and len(cm.transformer.resblocks) == 3
    assert cm.transformer.resblocks[0].attn.num_heads == 2
    assert cm.text_projection.shape == (48, 32) and cm.visual.proj.shape == (64, 32)
    assert cm.visual.input_resolution == 32 and cm.context_length == 77
    assert cm.token_embedding.num_embeddings == 49408  # the real tokenizer's vocabulary
    with torch.no_grad():
        assert cm.encode_text(clip.tokenize(["a cat"])).shape == (1, 32)
        assert cm.encode_image(torch.zeros(1, 3, 32, 32)).shape == (1, 32)


def test_tiny_clip_is_deterministic_and_leaves_global_rng_alone():
    torch.manual_seed(42)
    expected_draw = torch.rand(3)
    torch.manual_seed(42)
    a = restore.tiny_clip(7)
    draw = torch.rand(3)
    assert torch.equal(draw, expected_draw)
    _assert_same_weights(restore.tiny_clip(7), a)
    other = restore.tiny_clip(8)
    assert not torch.equal(other.visual.conv1.weight, a.visual.conv1.weight)
    small = restore.tiny_clip(0, vision_layers=2, embed_dim=16)
    assert len(small.visual.transformer.resblocks) == 2 and small.text_projection.shape[1] == 16
    with pytest.raises(TypeError, match="vision_depth"):
        restore.tiny_clip(0, vision_depth=2)


# ------------------------------------------------------------------ files
def test_plain_and_dims_files_load_the_same_weights(tmp_path, plain_known):
    original = restore.tiny_clip(3, **PLAIN_DIMS)
    plain = tmp_path / "plain.pt"
    torch.save(original.state_dict(), plain)
    with_dims = tmp_path / "dims.pth"
    dims = backbone.tiny_clip_dims(**PLAIN_DIMS)
    torch.save({"dims": dims, "state_dict": original.state_dict()}, with_dims)
    a, b = restore.load_clip(str(plain)), restore.load_clip(str(with_dims))
    for m in (a, b):
        _assert_frozen_eval_fp32(m)
        _assert_same_weights(m, original)
    images, tokens = torch.randn(2, 3, 32, 32), clip.tokenize(["a cat", "a dog on a mat"])
    with torch.no_grad():
        for m in (a, b):
            torch.testing.assert_close(m.encode_image(images), original.encode_image(images),
                                       atol=0, rtol=0)
            torch.testing.assert_close(m.encode_text(tokens), original.encode_text(tokens),
                                       atol=0, rtol=0)


@pytest.mark.parametrize("dims", [{}, PLAIN_DIMS], ids=["width48", "width64"])
def test_plain_state_dict_of_a_small_clip_is_refused_with_the_saving_call(tmp_path, dims):
    """Head counts are not in the weights: without dims only OpenAI's shapes are loaded (width 48
    used to fail deep inside torch, width 64 to load with a guessed head count)."""
    path = tmp_path / "small.pt"
    torch.save(restore.tiny_clip(0, **dims).state_dict(), path)
    with pytest.raises(backbone.BackboneError) as err:
        restore.load_clip(str(path))
    msg = str(err.value)
    assert f"restore.backbone.save_clip(model, {str(path)!r}, dims)" in msg
    width = dims.get("transformer_width", 48)
    assert f"(32, 32, 3, 64, 8, {width}, 3)" in msg and "\n" not in msg


def test_openai_shapes_agree_with_open_clip_configs():
    """The table of OpenAI's shapes against open_clip's own model configs (independent)."""
    open_clip = pytest.importorskip("open_clip")
    for name, shapes in backbone.OPENAI_SHAPES.items():
        cfg = open_clip.get_model_config(name.replace("/", "-").replace("@336px", "-336"))
        v, t = cfg["vision_cfg"], cfg["text_cfg"]
        layers = tuple(v["layers"]) if isinstance(v["layers"], list) else v["layers"]
        expected = (cfg["embed_dim"], v["image_size"], layers, v["width"], v.get("patch_size"),
                    t["width"], t["layers"])
        assert shapes == expected, name


def test_dims_file_keeps_head_count(tmp_path):
    """The tiny CLIP's text width 48 with 2 heads cannot be inferred from weights alone."""
    original = restore.tiny_clip(4)
    path = tmp_path / "tiny.pt"
    backbone.save_clip(original, str(path), backbone.tiny_clip_dims())
    loaded = restore.load_clip(str(path))
    assert loaded.transformer.resblocks[0].attn.num_heads == 2
    _assert_same_weights(loaded, original)


def test_fp16_plain_file_loads_as_fp32(tmp_path, plain_known):
    original = restore.tiny_clip(5, **PLAIN_DIMS)
    clip.model.convert_weights(original)
    path = tmp_path / "half.pt"
    torch.save(original.state_dict(), path)
    loaded = restore.load_clip(str(path))
    _assert_frozen_eval_fp32(loaded)
    for k, v in original.state_dict().items():
        assert torch.equal(loaded.state_dict()[k], v.float()), k


@pytest.mark.filterwarnings("ignore")  # tracing warnings of torch.jit
def test_torchscript_archive_loads(tmp_path, plain_known):
    original = restore.tiny_clip(6, **PLAIN_DIMS)
    traced = torch.jit.trace(original, (torch.randn(1, 3, 32, 32), clip.tokenize(["a cat"])),
                             check_trace=False)
    path = tmp_path / "jit.pt"
    traced.save(str(path))
    assert set(torch.jit.load(str(path)).state_dict()) == set(original.state_dict())
    # Not one of OpenAI's files (checksum): a TorchScript program loads only when trusted
    # (tests/test_faults_pickle.py covers the refusal and the checksum).
    loaded = restore.load_clip(str(path), trust=True)
    _assert_frozen_eval_fp32(loaded)
    _assert_same_weights(loaded, original)


def test_file_without_clip_weights_is_rejected(tmp_path):
    path = tmp_path / "other.pt"
    torch.save({"weight": torch.zeros(2)}, path)
    with pytest.raises(restore.BackboneError, match="text_projection"):
        restore.load_clip(str(path))
    garbage = tmp_path / "garbage.pt"
    garbage.write_bytes(b"not a checkpoint")
    with pytest.raises(restore.BackboneError, match="garbage.pt"):
        restore.load_clip(str(garbage))


def test_missing_file_names_path_and_key(tmp_path):
    path = str(tmp_path / "nowhere" / "ViT-B-16.pt")
    with pytest.raises(restore.BackboneError) as err:
        restore.load_clip(path)
    assert path in str(err.value) and "MODEL.BACKBONE.PATH" in str(err.value)


def test_build_backbone_prefers_path(tmp_path, make_cfg):
    original = restore.tiny_clip(9)
    path = tmp_path / "tiny.pt"
    backbone.save_clip(original, str(path), backbone.tiny_clip_dims())
    cfg = make_cfg("CoOp")
    cfg.MODEL.BACKBONE.NAME = "ViT-B/16"
    cfg.MODEL.BACKBONE.PATH = str(path)
    _assert_same_weights(restore.build_backbone(cfg), original)
    cfg.MODEL.BACKBONE.PATH = ""
    cfg.MODEL.BACKBONE.NAME = "tiny-random"
    _assert_same_weights(restore.build_backbone(cfg), restore.tiny_clip())


# ------------------------------------------------------------------ names
def test_openai_cache_path():
    assert backbone.openai_cache_path("ViT-B/16") == os.path.expanduser(
        "~/.cache/clip/ViT-B-16.pt")


def test_openai_name_without_cache_or_network(tmp_path, monkeypatch):
    monkeypatch.setattr(backbone, "CACHE_DIR", str(tmp_path))

    def offline(*args, **kwargs):
        raise urllib.error.URLError("no network")

    monkeypatch.setattr(clip.clip.urllib.request, "urlopen", offline)
    with pytest.raises(restore.BackboneError) as err:
        restore.load_clip("ViT-B/16")
    msg = str(err.value)
    assert os.path.join(str(tmp_path), "ViT-B-16.pt") in msg
    assert "MODEL.BACKBONE.PATH" in msg and "ViT-B/16" in msg
    assert not (tmp_path / "ViT-B-16.pt").exists()


def test_interrupted_download_leaves_no_partial_file(tmp_path, monkeypatch):
    monkeypatch.setattr(backbone, "CACHE_DIR", str(tmp_path))

    class Broken(io.BytesIO):
        def __init__(self):
            super().__init__(b"x" * 100)
            self.calls = 0

        def info(self):
            return {"Content-Length": "1000"}

        def read(self, n=-1):
            self.calls += 1
            if self.calls > 1:
                raise ConnectionResetError("connection reset")
            return super().read(n)

    monkeypatch.setattr(clip.clip.urllib.request, "urlopen", lambda url: Broken())
    with pytest.raises(restore.BackboneError, match="MODEL.BACKBONE.PATH"):
        restore.load_clip("ViT-B/32")
    assert not (tmp_path / "ViT-B-32.pt").exists()


def test_unknown_name_lists_valid_names():
    with pytest.raises(restore.BackboneError) as err:
        restore.load_clip("ViT-Z/99")
    msg = str(err.value)
    assert "ViT-Z/99" in msg and "MODEL.BACKBONE.PATH" in msg and "open_clip:MODEL/TAG" in msg
    for name in clip.available_models() + ["tiny-random", "testbed"]:
        assert name in msg, name


def test_small_backbone_names():
    _assert_same_weights(restore.load_clip("tiny-random"), restore.tiny_clip(0))


@pytest.mark.parametrize("name", ["ViT-B/61", "vit-b/16", "RN50x5"])
def test_mistyped_openai_name_is_not_taken_for_a_path(name):
    with pytest.raises(restore.BackboneError, match="Valid names: .*ViT-B/16"):
        restore.load_clip(name)


@pytest.mark.parametrize("path", ["weights/clip.pt", "./clip", "~/missing/clip"])
def test_missing_relative_path_is_reported_as_a_file(path):
    with pytest.raises(restore.BackboneError, match="file not found"):
        restore.load_clip(path)
