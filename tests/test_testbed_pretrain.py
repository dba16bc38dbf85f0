"""The pretraining script is deterministic by seed (same batches, same weights, same record)."""
import json

import torch

from restore.testbed import captions as C
from restore.testbed import model as M
from restore.testbed import pretrain as P


def _run(out):
    args = ["--seed", "3", "--steps", "2", "--batch", "8", "--warmup", "1", "--workers", "0",
            "--eval-per-class", "1", "--out", str(out)]
    assert P.main(args) == 0
    return torch.load(out, map_location="cpu", weights_only=True), json.loads(out.with_suffix(".json").read_text())


def test_pretrain_is_deterministic(tmp_path):
    torch.set_num_threads(1)
    (a, ra), (b, rb) = _run(tmp_path / "a" / "m.pt"), _run(tmp_path / "b" / "m.pt")
    assert a["seed"] == 3 and a["dims"] == M.DEFAULT_DIMS
    assert a["state_dict"].keys() == b["state_dict"].keys()
    assert all(torch.equal(a["state_dict"][k], b["state_dict"][k]) for k in a["state_dict"])
    assert torch.equal(a["token_values"], b["token_values"])
    assert ra["zero_shot"] == rb["zero_shot"] and ra["seed"] == 3 and "--seed 3" in ra["command"]
    init = M.build_clip(seed=3).state_dict()
    assert not torch.equal(a["state_dict"]["visual.conv1.weight"], init["visual.conv1.weight"])  # it trained
    m = M.load_testbed_clip(tmp_path / "a" / "m.pt")
    assert m.context_length == 16


def test_caption_stream_fits_context_and_names_every_class():
    from restore.testbed.datasets import DATASETS
    stream = P.CaptionStream(seed=0, steps=3, batch=64)
    for img, tok in stream:
        assert img.shape == (64, 3, 32, 32) and tok.shape == (64, 16)
    import numpy as np
    rng = np.random.default_rng(0)
    caps = " ".join(C.caption(C.sample_concept(rng), rng) for _ in range(4000))
    words = set(caps.replace(".", " ").split())
    for d in DATASETS.values():
        for name in d.classnames:
            assert set(name.split()) <= words, name
    for w in ("large", "small", "sketch", "noisy", "cluttered"):
        assert w in words
