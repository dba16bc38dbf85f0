"""A backbone runs as its makers built it (restore.pretrained): the activation decided by open_clip's
model name and checked against the weights' tag, a file's position embeddings against the model,
and the config's INPUT.* fitted to (or refused for) what the backbone was trained with. No
download: the weights are a random ViT-B-32 built by open_clip's own factory with QuickGELU."""
import json
import os
import re

import pytest
import torch

import restore
from restore.backbone import BackboneError, freeze
from restore.pretrained import fit_inputs, pretraining

from test_engine_fakes import ROOT, make_oxford_pets

open_clip = pytest.importorskip("open_clip")

OPENAI_MEAN = [0.48145466, 0.4578275, 0.40821073]


@pytest.fixture(scope="module")
def quickgelu_vit_b32(tmp_path_factory):
    """(the file holding a random ViT-B-32 that open_clip's factory built with QuickGELU, that
    model's features, the features of the same weights under GELU)."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        model = freeze(open_clip.create_model("ViT-B-32-quickgelu"))
    path = tmp_path_factory.mktemp("weights") / "vit_b32_quickgelu.pt"
    torch.save(model.state_dict(), path)
    assert isinstance(model.visual.transformer.resblocks[0].mlp.gelu, open_clip.transformer.QuickGELU)
    want = features(model)
    for block in [*model.visual.transformer.resblocks, *model.transformer.resblocks]:
        block.mlp.gelu = torch.nn.GELU()  # what open_clip builds for the name "ViT-B-32"
    return str(path), want, features(model)


def features(model):
    """Image and text features of fixed inputs (2 images of 224 px, 2 captions)."""
    images = torch.randn(2, 3, 224, 224, generator=torch.Generator().manual_seed(1))
    tokens = open_clip.tokenize(["a photo of a cat.", "a sports car"])
    with torch.no_grad():
        return model.encode_image(images), model.encode_text(tokens)


def backbone_cfg(name, path=""):
    cfg = restore.get_cfg_default()
    cfg.MODEL.BACKBONE.NAME, cfg.MODEL.BACKBONE.PATH = name, path
    return cfg


@pytest.mark.parametrize("route", ["name + tag", "name + path", "tag + path"])
def test_quickgelu_weights_load_as_open_clip_built_them_by_every_route(route, quickgelu_vit_b32,
                                                                       monkeypatch):
    path, want, under_gelu = quickgelu_vit_b32
    name, file = {"name + tag": ("open_clip:ViT-B-32-quickgelu/openai", ""),
                  "name + path": ("open_clip:ViT-B-32-quickgelu", path),
                  "tag + path": ("open_clip:ViT-B-32-quickgelu/openai", path)}[route]
    fetched = []

    def from_cache(cfg, *args, **kwargs):  # open_clip's cache, without a download
        fetched.append(cfg)
        return path
    monkeypatch.setattr(open_clip.factory, "download_pretrained", from_cache)
    got = features(restore.build_backbone(backbone_cfg(name, file)))
    assert fetched == ([open_clip.get_pretrained_cfg("ViT-B-32-quickgelu", "openai")]
                       if route == "name + tag" else [])
    for g, w, gelu in zip(got, want, under_gelu):
        assert torch.equal(g, w)
        assert not torch.allclose(g, gelu, atol=1e-3)  # the comparison sees the activation


@pytest.mark.parametrize("name, with_file, fix", [
    ("open_clip:ViT-B-32/openai", False, "open_clip:ViT-B-32-quickgelu/openai, which builds QuickGELU"),
    ("open_clip:ViT-B-32", True, "open_clip:ViT-B-32-quickgelu/openai, or open_clip:ViT-B-32-quickgelu"),
    ("open_clip:ViT-B-32/openai", True, "open_clip:ViT-B-32-quickgelu/openai, which builds QuickGELU"),
    ("open_clip:ViT-B-32-quickgelu/laion2b_e16", False, "use MODEL.BACKBONE.NAME open_clip:ViT-B-32/laion2b_e16"),
])
def test_a_name_building_another_activation_is_refused_by_every_route(name, with_file, fix,
                                                                      quickgelu_vit_b32):
    """Refused before anything is built or downloaded, by the policy train.py runs and by the loader."""
    path = quickgelu_vit_b32[0] if with_file else ""
    for attempt in (lambda: fit_inputs(name, path, backbone_cfg(name, path)),
                    lambda: restore.build_backbone(backbone_cfg(name, path))):
        with pytest.raises(BackboneError) as err:
            attempt()
        assert fix in str(err.value) and "\n" not in str(err.value)
    # The name the message gives is the fix.
    suggested = re.search(r"MODEL.BACKBONE.NAME (open_clip:[\w.-]+/\w+)", str(err.value)).group(1)
    assert pretraining(suggested, path).quick_gelu == ("quickgelu" in suggested)


def test_train_py_refuses_the_gelu_name_for_openai_weights_in_one_line(capsys):
    import train
    with pytest.raises(SystemExit) as exit_:
        train.main(["--trainer", "CoOp", "--config-file", f"{ROOT}/configs/trainers/CoOp/vit_b32.yaml",
                    "--print-config", "MODEL.BACKBONE.NAME", "open_clip:ViT-B-32/openai"])
    assert exit_.value.code == 1
    err = capsys.readouterr().err.splitlines()
    assert err[0].startswith("Error: open_clip weights ViT-B-32/openai were trained with QuickGELU")
    assert "MODEL.BACKBONE.NAME open_clip:ViT-B-32-quickgelu/openai" in err[0]


def test_offline_message_names_the_quickgelu_model_and_keeps_the_tag(tmp_path, monkeypatch):
    """Offline, the one message says where open_clip looks and how to give it the file: the PATH with
    the tag kept, so that the tag's activation and preprocessing still apply."""
    hub = pytest.importorskip("huggingface_hub")
    monkeypatch.setattr(hub.constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(hub.constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    with pytest.raises(BackboneError) as err:
        restore.load_clip("open_clip:ViT-B-32-quickgelu/openai")
    msg = str(err.value)
    assert "the Hugging Face hub repo timm/vit_base_patch32_clip_224.openai" in msg
    assert msg.endswith("set MODEL.BACKBONE.PATH to it (keeping MODEL.BACKBONE.NAME "
                        "open_clip:ViT-B-32-quickgelu/openai).")
    # Without huggingface_hub open_clip downloads the URL into ~/.cache/clip: the message says so.
    monkeypatch.setattr(open_clip.pretrained, "_has_hf_hub", False)
    with pytest.raises(BackboneError) as err:
        restore.load_clip("open_clip:ViT-B-32-quickgelu/openai")
    url = open_clip.get_pretrained_cfg("ViT-B-32-quickgelu", "openai")["url"]
    assert f"expected from {url}, saved as ~/.cache/clip/ViT-B-32.pt." in str(err.value)


# ------------------------------------------------------------------ a file against its model
GEOMETRY = {  # tiny open_clip configs that differ only in image size or text context
    "restore-geo-32": dict(embed_dim=16, vision_cfg=dict(image_size=32, layers=1, width=32, patch_size=8, head_width=16),
                           text_cfg=dict(context_length=77, vocab_size=49408, width=32, heads=2, layers=1)),
    "restore-geo-64": dict(embed_dim=16, vision_cfg=dict(image_size=64, layers=1, width=32, patch_size=8, head_width=16),
                           text_cfg=dict(context_length=77, vocab_size=49408, width=32, heads=2, layers=1)),
    "restore-geo-ctx32": dict(embed_dim=16, vision_cfg=dict(image_size=32, layers=1, width=32, patch_size=8, head_width=16),
                              text_cfg=dict(context_length=32, vocab_size=49408, width=32, heads=2, layers=1)),
}


@pytest.fixture(scope="module")
def geometry_files(tmp_path_factory):
    folder = tmp_path_factory.mktemp("geometry")
    for name, cfg in GEOMETRY.items():
        (folder / f"{name}.json").write_text(json.dumps(cfg))
    open_clip.add_model_config(str(folder))
    files = {}
    for name in GEOMETRY:
        files[name] = str(folder / f"{name}.pt")
        torch.save(open_clip.create_model(name).state_dict(), files[name])
    return files


def test_a_file_for_another_image_size_or_context_is_refused(geometry_files):
    """open_clip's loader would interpolate the position embeddings to fit: refused, naming the model
    made for the file's size."""
    with pytest.raises(BackboneError, match=r"restore-geo-64\.pt holds weights for 64 px images, but "
                                            r"open_clip:restore-geo-32 takes 32 px .* use "
                                            r"MODEL.BACKBONE.NAME open_clip:restore-geo-64\."):
        restore.build_backbone(backbone_cfg("open_clip:restore-geo-32", geometry_files["restore-geo-64"]))
    with pytest.raises(BackboneError, match=r"holds a text context of 32 tokens, but "
                                            r"open_clip:restore-geo-32 has 77"):
        fit_inputs("open_clip:restore-geo-32", geometry_files["restore-geo-ctx32"],
                   backbone_cfg("open_clip:restore-geo-32"))
    # Its own file fits, and a model without published weights takes open_clip's defaults.
    pre = pretraining("open_clip:restore-geo-64", geometry_files["restore-geo-64"])
    assert (pre.image_size, pre.context_length, pre.quick_gelu) == (64, 77, False)
    assert "open_clip's defaults" in pre.source and list(pre.mean) == OPENAI_MEAN


# ------------------------------------------------------------------ preprocessing: adopt or refuse
def test_preprocessing_of_pretraining_is_adopted_with_a_note():
    name = "open_clip:ViT-L-14/laion2b_s32b_b82k"
    cfg = restore.get_cfg_default()
    cfg.merge_from_file(f"{ROOT}/configs/trainers/CoOp/vit_b16.yaml")  # written for OpenAI's ViT-B/16
    note = fit_inputs(name, "", cfg)
    assert cfg.INPUT.PIXEL_MEAN == [0.5, 0.5, 0.5] and cfg.INPUT.PIXEL_STD == [0.5, 0.5, 0.5]
    assert note == ("INPUT.PIXEL_MEAN [0.48145466, 0.4578275, 0.40821073] -> [0.5, 0.5, 0.5], "
                    "INPUT.PIXEL_STD [0.26862954, 0.26130258, 0.27577711] -> [0.5, 0.5, 0.5]: what "
                    "open_clip ViT-L-14/laion2b_s32b_b82k was trained with (open_clip's pretrained "
                    "config of ViT-L-14/laion2b_s32b_b82k).")
    assert fit_inputs(name, "", cfg) == ""  # fitted: nothing more to adopt
    cfg = restore.get_cfg_default()
    cfg.merge_from_file(f"{ROOT}/configs/trainers/CoOp/vit_b16.yaml")
    assert fit_inputs("ViT-L/14@336px", "", cfg).startswith("INPUT.SIZE (224, 224) -> (336, 336): ")
    assert cfg.INPUT.SIZE == (336, 336)


def test_preprocessing_the_transforms_cannot_do_is_refused(tmp_path):
    with pytest.raises(BackboneError, match="resized by 'squash'"):
        fit_inputs("open_clip:ViT-B-16-SigLIP/webli", "", backbone_cfg(""))
    # ViT-H-14-quickgelu's published weights differ in resize mode: a file must name its tag.
    path = tmp_path / "weights.pt"
    path.write_bytes(b"")
    with pytest.raises(BackboneError, match=r"different preprocessing \(resize_mode\) .* Name its "
                                            r"tag: MODEL.BACKBONE.NAME open_clip:ViT-H-14-quickgelu/TAG"):
        fit_inputs("open_clip:ViT-H-14-quickgelu", str(path), backbone_cfg(""))


def test_adopted_inputs_are_recorded_so_a_rerun_accepts_them(tmp_path, capsys):
    """train.py adopts before the run record is written: run_info.json holds the adopted values and
    the same command finds its finished run (exit 0)."""
    import train
    make_oxford_pets(str(tmp_path / "data"))
    out = tmp_path / "out"
    argv = ["--root", str(tmp_path / "data"), "--trainer", "ZeroshotCLIP", "--engine", "native",
            "--dataset-config-file", f"{ROOT}/configs/datasets/oxford_pets.yaml",
            "--output-dir", str(out), "MODEL.BACKBONE.NAME", "testbed", "INPUT.SIZE", "(32, 32)",
            "INPUT.PIXEL_MEAN", "[0.5, 0.5, 0.5]", "DATALOADER.NUM_WORKERS", "0", "USE_CUDA", "False"]
    train.main(argv)
    assert "Note: INPUT.PIXEL_MEAN [0.5, 0.5, 0.5] -> [0.48145466, 0.4578275, 0.40821073]" in \
        capsys.readouterr().out
    recorded = json.loads((out / "run_info.json").read_text())["config"]["INPUT"]
    assert recorded["PIXEL_MEAN"] == OPENAI_MEAN
    with pytest.raises(SystemExit) as exit_:
        train.main(["--check-finished"] + argv)
    assert exit_.value.code == 0
    assert os.path.isfile(out / "log.txt")
