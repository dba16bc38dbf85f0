"""The bundled testbed CLIP: loads into OpenAI's clip.model.CLIP with the documented dims, rebuilds its
never-trained token rows from the seed, and classifies testbed images far above chance zero-shot."""
import json

import numpy as np
import pytest
import torch

from restore.testbed import datasets as D
from restore.testbed import model as M


@pytest.fixture(scope="module")
def clip_model():
    return M.load_testbed_clip()


@pytest.fixture(scope="module")
def record():
    with open(M.DEFAULT_RECORD) as f:
        return json.load(f)


@pytest.fixture(scope="module")
def ckpt():
    return torch.load(M.DEFAULT_CHECKPOINT, map_location="cpu", weights_only=True)


def test_checkpoint_is_small_and_documented(ckpt, record):
    assert M.DEFAULT_CHECKPOINT.stat().st_size <= 15 * 2 ** 20
    assert ckpt["format"] == M.FORMAT
    assert ckpt["dims"] == record["dims"] == M.DEFAULT_DIMS
    assert ckpt["seed"] == record["seed"]
    assert "restore.testbed.pretrain" in record["command"] and f"--seed {record['seed']}" in record["command"]
    assert record["steps"] > 0
    for spec in D.DATASETS.values():
        zs = record["zero_shot"][spec.registry_name]
        assert zs["template"] == spec.template and zs["classes"] == len(spec.classes)
        assert {"base", "new", "all"} <= set(zs)


def test_loads_into_openai_clip_class(clip_model, record):
    import clip.model
    m = clip_model
    assert type(m) is clip.model.CLIP
    d = record["dims"]
    assert not m.training and all(p.dtype == torch.float32 and p.device.type == "cpu" for p in m.parameters())
    assert m.context_length == d["context_length"] == 16
    assert m.visual.input_resolution == d["image_resolution"] == 32
    assert m.visual.conv1.kernel_size == (d["vision_patch_size"],) * 2
    assert m.token_embedding.weight.shape == (d["vocab_size"], d["transformer_width"]) == (49408, 128)
    assert len(m.transformer.resblocks) == d["transformer_layers"] and len(m.visual.transformer.resblocks) == d["vision_layers"]
    assert m.transformer.resblocks[0].attn.num_heads == d["transformer_heads"] == d["transformer_width"] // 64
    assert m.text_projection.shape == (128, d["embed_dim"])
    # clip.model.build_model infers the same architecture from the full state dict
    rebuilt = clip.model.build_model({k: v.clone() for k, v in m.state_dict().items()}).float()
    assert sum(p.numel() for p in rebuilt.parameters()) == sum(p.numel() for p in m.parameters())


def test_token_rows_rebuilt_from_seed(clip_model, ckpt):
    emb = clip_model.token_embedding.weight.detach()
    init = M.token_embedding_init(ckpt["seed"], *emb.shape)
    rows = ckpt["token_rows"]
    untouched = torch.ones(len(emb), dtype=torch.bool)
    untouched[rows] = False
    assert untouched.sum() > 49000
    assert torch.equal(emb[untouched], init[untouched])  # bit-exact rebuild of the rest from the seed
    assert torch.equal(emb[rows], ckpt["token_values"])
    import clip
    caption_rows = set(clip.tokenize(["a picture of a large striped red crescent."], context_length=16)[0].tolist())
    assert caption_rows <= set(rows.tolist())
    trained = (emb[rows] != init[rows]).any(1)
    assert trained.float().mean() > 0.9  # the stored rows were actually trained
    assert not torch.equal(M.token_embedding_init(ckpt["seed"] + 1, 8, 4), M.token_embedding_init(ckpt["seed"], 8, 4))


def _zero_shot(model, key, per_class):
    """Zero-shot accuracy with the dataset's hand prompt on the base and new halves, computed here."""
    import clip
    ds = D.get(key)
    x, y = D.render_split(ds, "test", seed=11, per_class=per_class)  # a sample the record never saw
    mean = torch.tensor(M.CLIP_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(M.CLIP_STD).view(1, 3, 1, 1)
    img = (torch.from_numpy(x).permute(0, 3, 1, 2).float() / 255 - mean) / std
    tok = clip.tokenize([ds.template.format(c) for c in ds.classnames], context_length=model.context_length)
    with torch.no_grad():
        fi = model.encode_image(img)
        ft = model.encode_text(tok)
    sims = (fi / fi.norm(dim=-1, keepdim=True)) @ (ft / ft.norm(dim=-1, keepdim=True)).t()
    y = torch.from_numpy(y)
    m = ds.num_base
    acc = {}
    for half, lo, hi in (("base", 0, m), ("new", m, len(ds.classes))):
        sel = (y >= lo) & (y < hi)
        acc[half] = ((sims[sel][:, lo:hi].argmax(1) + lo) == y[sel]).float().mean().item()
        acc[half + "_chance"] = 1.0 / (hi - lo)
    return acc


@pytest.mark.parametrize("key", ["shapes", "patterns", "digits"])
def test_zero_shot_far_above_chance(clip_model, key):
    acc = _zero_shot(clip_model, key, per_class=4)
    for half in ("base", "new"):
        assert acc[half] > 8 * acc[half + "_chance"], acc


def test_record_matches_checkpoint(clip_model, record):
    """The recorded zero-shot accuracies are those of the bundled weights (one dataset, its full test split)."""
    from restore.testbed.zeroshot import zeroshot_accuracy
    acc = zeroshot_accuracy(clip_model, "patterns")
    rec = record["zero_shot"]["TestbedPatterns"]
    for k in ("base", "new", "all"):
        assert abs(acc[k] - rec[k]) < 2e-3, (k, acc[k], rec[k])


def test_build_clip_and_errors(tmp_path):
    m = M.build_clip(dict(M.DEFAULT_DIMS, vision_layers=1, transformer_layers=1), seed=5)
    assert torch.equal(m.token_embedding.weight, M.token_embedding_init(5, 49408, 128))
    rows = M.caption_token_ids(["a red circle."])
    M.save_checkpoint(m, tmp_path / "x.pt", dict(M.DEFAULT_DIMS, vision_layers=1, transformer_layers=1), 5, rows)
    m2 = M.load_testbed_clip(tmp_path / "x.pt")
    assert all(torch.equal(a, b) for a, b in zip(m.state_dict().values(), m2.state_dict().values()))
    with torch.no_grad():
        m.token_embedding.weight[1000] += 1  # a trained row outside the stored set must not be dropped silently
    with pytest.raises(RuntimeError, match="outside the stored set"):
        M.save_checkpoint(m, tmp_path / "y.pt", dict(M.DEFAULT_DIMS, vision_layers=1, transformer_layers=1), 5, rows)
    with pytest.raises(FileNotFoundError, match="pretrain"):
        M.load_testbed_clip(tmp_path / "missing.pt")
    torch.save({"state_dict": {}}, tmp_path / "other.pt")
    with pytest.raises(ValueError, match="not a testbed CLIP"):
        M.load_testbed_clip(tmp_path / "other.pt")


def test_loading_leaves_global_rng_alone():
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    M.load_testbed_clip()
    M.build_clip(dict(M.DEFAULT_DIMS, vision_layers=1, transformer_layers=1), seed=0)
    assert torch.equal(torch.rand(3), expected)
