"""The testbed's datasets: determinism by seed, split-file format, label order (base/new halves), atomic and
idempotent generation, and the registry path through restore.data."""
import dataclasses
import hashlib
import json
import os

import numpy as np
import pytest

from restore.testbed import datasets as D
from restore.testbed import generate as G
from restore.testbed import render as R


@pytest.fixture
def small(monkeypatch):
    """Shrink every testbed dataset to a few images per class and split (same classes and renderer)."""
    for key, spec in list(D.DATASETS.items()):
        monkeypatch.setitem(D.DATASETS, key, dataclasses.replace(spec, n_train=3, n_val=1, n_test=2))
    return D.DATASETS


def _digest(folder):
    out = {}
    for dirpath, _, files in os.walk(folder):
        for f in files:
            p = os.path.join(dirpath, f)
            with open(p, "rb") as fh:
                out[os.path.relpath(p, folder)] = hashlib.sha256(fh.read()).hexdigest()
    return out


def test_generation_is_deterministic_by_seed(tmp_path, small):
    a = G.generate(tmp_path / "a", "patterns", seed=3)
    b = G.generate(tmp_path / "b", "patterns", seed=3)
    c = G.generate(tmp_path / "c", "patterns", seed=4)
    da, db, dc = _digest(a), _digest(b), _digest(c)
    assert da == db and len(da) == 32 * 6 + 2  # images + split file + testbed.json
    pngs = [k for k in da if k.endswith(".png")]
    assert sum(da[k] != dc[k] for k in pngs) > 0.9 * len(pngs)  # another seed, other images
    split = "split_zhou_TestbedPatterns.json"
    assert json.loads((a / split).read_text()) == json.loads((c / split).read_text())  # same files and labels


def test_render_depends_only_on_seed_and_index():
    ds = D.get("digits")
    x1 = D.render_image(ds, "test", 7, 3, seed=0)
    x2 = D.render_image(ds, "test", 7, 3, seed=0)
    assert x1.dtype == np.uint8 and x1.shape == (32, 32, 3)
    assert np.array_equal(x1, x2)
    assert not np.array_equal(x1, D.render_image(ds, "test", 7, 4, seed=0))
    assert not np.array_equal(x1, D.render_image(ds, "train", 7, 3, seed=0))


def test_split_file_format(tmp_path, small):
    folder = G.generate(tmp_path, "shapes", seed=0)
    path = folder / "split_zhou_TestbedShapes.json"
    text = path.read_text()
    assert text.startswith('{\n    "train": [\n        [\n            "')  # json.dump(indent=4), as CoOp
    split = json.loads(text)
    assert list(split) == ["train", "val", "test"]
    names = D.get("shapes").classnames
    for key, per_class in (("train", 3), ("val", 1), ("test", 2)):
        rows = split[key]
        assert len(rows) == per_class * len(names)
        for rel, label, cname in rows:
            assert isinstance(rel, str) and isinstance(label, int) and isinstance(cname, str)
            assert not os.path.isabs(rel) and (folder / "images" / rel).is_file()
            assert cname == names[label] and " " in cname and "_" not in cname
        assert sorted({r[1] for r in rows}) == list(range(len(names)))


@pytest.mark.parametrize("key, base_words, new_words, other", [
    ("shapes", R.SHAPES_A[:4], R.SHAPES_A[4:], R.COLOUR_NAMES),
    ("patterns", R.SHAPES_B[:4], R.SHAPES_B[4:], R.PATTERNS),
    ("digits", R.DIGITS[:5], R.DIGITS[5:], R.COLOUR_NAMES),
])
def test_base_new_halves_split_by_shape(key, base_words, new_words, other):
    """CoOp's subsampling keeps sorted labels[:ceil(n/2)] as base: that must be whole shapes x every colour."""
    names = D.get(key).classnames
    m = (len(names) + 1) // 2
    base, new = names[:m], names[m:]
    assert {n.split()[-1] for n in base} == set(base_words)
    assert {n.split()[-1] for n in new} == set(new_words)
    assert {n.split()[0] for n in base} == set(other) == {n.split()[0] for n in new}
    assert len(set(names)) == len(names) == len(base_words + new_words) * len(other)


def test_vocabularies_and_domains():
    shapes, patterns, digits = (set(D.get(k).classnames) for k in ("shapes", "patterns", "digits"))
    assert not (shapes & patterns) and not (shapes & digits) and not (patterns & digits)
    src = D.get("objects")
    assert len(src.classes) == 128 and shapes <= set(src.classnames)
    for k in ("objects_v2", "objects_sketch", "objects_noise", "objects_clutter"):
        d = D.get(k)
        assert d.classnames == src.classnames and d.role == "domain"
        assert d.template.endswith("{}.") and "large" in d.template
    # the shifted renderings differ from the source's style
    a = D.render_image(D.get("objects_sketch"), "test", 0, 0)
    assert a.mean() > 200  # outline on near-white paper
    n = D.render_image(D.get("objects_noise"), "test", 0, 0).astype(float)
    assert np.abs(np.diff(n, axis=1)).mean() > 40  # heavy pixel noise


def test_generation_is_idempotent_and_atomic(tmp_path, small):
    folder = G.generate(tmp_path, "digits", seed=0)
    split = folder / "split_zhou_TestbedDigits.json"
    mtime = split.stat().st_mtime_ns
    assert G.ensure(tmp_path, "digits") == folder
    assert split.stat().st_mtime_ns == mtime  # left alone
    assert [p.name for p in tmp_path.iterdir()] == ["testbed_digits"]  # no temporary folder left
    with pytest.raises(RuntimeError, match="seed"):
        G.generate(tmp_path, "digits", seed=1)
    # a folder without its split file (an interrupted copy, a split_fewshot/ cache) is completed in place
    split.unlink()
    (folder / "split_fewshot").mkdir()
    G.generate(tmp_path, "digits", seed=0)
    assert split.is_file() and (folder / "split_fewshot").is_dir()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["testbed_digits"]


def test_cli(tmp_path, small, capsys):
    assert G.main(["--root", str(tmp_path), "--datasets", "objects_sketch", "patterns"]) == 0
    assert (tmp_path / "testbed_objects_sketch" / "split_zhou_TestbedObjectsSketch.json").is_file()
    assert G.main(["--root", str(tmp_path), "--datasets", "patterns"]) == 0
    assert "skipped" in capsys.readouterr().out


def _cfg(root, name, shots=-1, subsample="all"):
    from restore import get_cfg_default
    cfg = get_cfg_default()
    cfg.DATASET.ROOT = str(root)
    cfg.DATASET.NAME = name
    cfg.DATASET.NUM_SHOTS = shots
    cfg.DATASET.SUBSAMPLE_CLASSES = subsample
    cfg.SEED = 1
    return cfg


def test_registry_generates_on_first_use(tmp_path, small):
    data = pytest.importorskip("restore.data")
    if not hasattr(data, "build_dataset"):
        pytest.skip("restore.data has no build_dataset")
    root = tmp_path / "DATA"  # absent: created and filled on first use
    base = data.build_dataset(_cfg(root, "TestbedPatterns", shots=2, subsample="base"))
    assert base.classnames == D.get("patterns").classnames[:16]
    assert len(base.train_x) == 16 * 2 and len(base.test) == 16 * 2
    new = data.build_dataset(_cfg(root, "TestbedPatterns", shots=2, subsample="new"))
    assert new.classnames == D.get("patterns").classnames[16:]
    assert sorted({d.label for d in new.test}) == list(range(16))
    assert type(base).template == "a picture of a large {}."
    from restore.data.testbed import TESTBED_DATASETS
    assert set(TESTBED_DATASETS) == set(D.DATASETS)
    for key, name in TESTBED_DATASETS.items():
        assert name in data.DATASETS
        cfg_file = os.path.join(os.path.dirname(__file__), "..", "configs", "datasets", f"{key}.yaml")
        with open(cfg_file) as f:
            assert f'NAME: "{name}"' in f.read()


def test_zeroshot_prompt_of_dg_targets_is_the_sources():
    """CoOp's protocol for the ImageNet variants: zero-shot CLIP keeps the source's prompt on every DG
    target; the other datasets (cross-dataset targets included) keep their own hand prompt."""
    import restore.data.testbed  # noqa: F401  (registers the templates)
    from restore.templates import template_for
    source = D.get("objects").template
    for key, spec in D.DATASETS.items():
        expected = source if spec.role == "domain" else spec.template
        assert spec.zeroshot_template == expected and template_for(spec.registry_name) == expected, key
    assert D.get("objects_sketch").template == "a sketch of a large {}."  # kept as the reference prompt
    assert template_for("TestbedObjectsSketch") == "a picture of a large {}."
