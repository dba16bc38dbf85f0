"""Checkpoint files: Dassl's layout, weights_only loading, atomic writes,
clear messages for missing epochs; Dassl's evaluator lines; the log file naming."""
import os

import pytest
import torch

from restore.engine import checkpoint as ckpt
from restore.engine import Classification, close_logger, setup_logger
import restore


def state(epoch=3):
    return {"state_dict": {"prompt_learner.ctx": torch.randn(2, 4)}, "epoch": epoch,
            "optimizer": {"state": {}, "param_groups": [{"lr": 0.1, "params": [0]}]},
            "scheduler": {"last_epoch": epoch}, "val_result": None, "rng": ckpt.rng_state()}


def test_layout_and_weights_only(tmp_path):
    save_dir = tmp_path / "MultiModalPromptLearner"
    path = ckpt.save_checkpoint(state(3), str(save_dir))
    assert path == str(save_dir / "model.pth.tar-3")
    assert (save_dir / "checkpoint").read_text() == "model.pth.tar-3\n"
    loaded = torch.load(path, weights_only=True)  # plain tensors and values only
    assert loaded["epoch"] == 3 and torch.equal(loaded["state_dict"]["prompt_learner.ctx"],
                                                torch.load(path, weights_only=True)["state_dict"]["prompt_learner.ctx"])
    ckpt.save_checkpoint(state(5), str(save_dir))
    assert ckpt.latest_checkpoint(str(save_dir)) == str(save_dir / "model.pth.tar-5")
    assert ckpt.available_epochs(str(save_dir)) == [3, 5]
    assert sorted(os.listdir(save_dir)) == ["checkpoint", "model.pth.tar-3", "model.pth.tar-5"]


def test_atomic_write_keeps_old_file(tmp_path, monkeypatch):
    save_dir = tmp_path / "prompt_learner"
    ckpt.save_checkpoint(state(1), str(save_dir))
    before = (save_dir / "model.pth.tar-1").read_bytes()

    def broken_save(obj, f, *a, **k):
        f.write(b"half a checkpoint")
        raise OSError("disk full")

    monkeypatch.setattr(torch, "save", broken_save)
    with pytest.raises(OSError, match="disk full"):
        ckpt.save_checkpoint(state(1), str(save_dir))
    with pytest.raises(OSError):
        ckpt.save_checkpoint(state(2), str(save_dir))
    # The old file is intact, no partial file and no temporary file is left, `checkpoint` unchanged.
    assert (save_dir / "model.pth.tar-1").read_bytes() == before
    assert sorted(os.listdir(save_dir)) == ["checkpoint", "model.pth.tar-1"]
    assert (save_dir / "checkpoint").read_text() == "model.pth.tar-1\n"


def test_rng_state_round_trip(tmp_path):
    import random
    import numpy as np
    s = ckpt.rng_state()
    torch.save(s, tmp_path / "rng.pt")
    a = (random.random(), np.random.rand(), torch.rand(1).item())
    ckpt.set_rng_state(torch.load(tmp_path / "rng.pt", weights_only=True))
    assert (random.random(), np.random.rand(), torch.rand(1).item()) == a


def test_damaged_file_is_a_clear_error(tmp_path):
    path = tmp_path / "model.pth.tar-1"
    path.write_bytes(b"PK\x03\x04 not really a zip")
    with pytest.raises(ckpt.CheckpointFileError, match="damaged, incomplete"):
        ckpt.load_checkpoint(str(path))


def test_missing_epoch_lists_saved_ones(tmp_path):
    ckpt.save_checkpoint(state(10), str(tmp_path / "VLPromptLearner"))
    with pytest.raises(ckpt.CheckpointFileError, match=r"model.pth.tar-5.*Saved epochs there: 10.*--load-epoch 10"):
        ckpt.model_file(str(tmp_path), "VLPromptLearner", 5)
    with pytest.raises(ckpt.CheckpointFileError, match="Sub-folders of .*VLPromptLearner"):
        ckpt.model_file(str(tmp_path), "MultiModalPromptLearner", 10)
    # No epoch: the latest checkpoint (there is no model-best.pth.tar).
    assert ckpt.model_file(str(tmp_path), "VLPromptLearner").endswith("model.pth.tar-10")


def test_evaluator_prints_dassl_lines(capsys):
    cfg = restore.get_cfg_default()
    ev = Classification(cfg, lab2cname={0: "a", 1: "b"})
    logits = torch.tensor([[2.0, 1.0]] * 1000 + [[0.0, 1.0]] * 234)
    labels = torch.tensor([0] * 900 + [1] * 100 + [1] * 200 + [0] * 34)
    ev.process(logits, labels)
    res = ev.evaluate()
    out = capsys.readouterr().out.splitlines()
    assert out[:5] == ["=> result", "* total: 1,234", "* correct: 1,100", "* accuracy: 89.1%",
                       "* error: 10.9%"]
    assert out[5].startswith("* macro_f1: ") and out[5].endswith("%")
    assert list(res) == ["accuracy", "error_rate", "macro_f1"]
    assert res["accuracy"] == pytest.approx(110000 / 1234)


def test_macro_f1_matches_sklearn():
    from sklearn.metrics import f1_score
    import numpy as np
    from restore.engine.evaluator import macro_f1_score
    rng = np.random.default_rng(0)
    for _ in range(20):
        y_true = rng.integers(0, 7, size=50)
        y_pred = np.where(rng.random(50) < 0.5, y_true, rng.integers(0, 9, size=50))
        want = f1_score(y_true, y_pred, average="macro", labels=np.unique(y_true))
        assert macro_f1_score(y_true.tolist(), y_pred.tolist()) == pytest.approx(want, abs=1e-12)


def test_logger_never_overwrites(tmp_path, capsys):
    try:
        first = setup_logger(str(tmp_path))
        print("hello")
    finally:
        close_logger()
    assert first == str(tmp_path / "log.txt") and (tmp_path / "log.txt").read_text() == "hello\n"
    try:
        second = setup_logger(str(tmp_path))
        print("again")
    finally:
        close_logger()
    assert second.startswith(str(tmp_path / "log.txt-")) and open(second).read() == "again\n"
    assert (tmp_path / "log.txt").read_text() == "hello\n"
    assert "hello" in capsys.readouterr().out
