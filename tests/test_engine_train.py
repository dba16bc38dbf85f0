"""The native engine end to end, through train.py's main() in-process: every trainer trains one epoch on
the base classes of a fake OxfordPets (the real split_zhou reader, few-shot sampling and base/new
subsampling) with the random tiny CLIP, is evaluated on the new classes, and parse_test_res tabulates it.
Plus: resume after an interruption ends exactly like an uninterrupted run; eval-only loads the requested
epoch; evaluation with cached class texts equals per-batch text encoding; a non-finite loss stops with
one clear message."""
import os
import re

import pytest
import torch

import parse_test_res
import train
from restore.engine import Trainer, epoch_lr, registered_name, set_random_seed
from restore.methods.cocoop.model import CoCoOp
from restore.engine.logger import close_logger
from test_engine_fakes import cli_opts, make_cfg, make_oxford_pets, trainers

DATASET_CFG = "configs/datasets/oxford_pets.yaml"


@pytest.fixture(scope="module")
def data_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("data")
    make_oxford_pets(str(root))
    return str(root)


def run(data_root, trainer, out, *extra, seed=1, opts=()):
    args = ["--root", data_root, "--seed", str(seed), "--trainer", trainer, "--engine", "native",
            "--dataset-config-file", DATASET_CFG, "--output-dir", str(out), *extra]
    return train.main(args + cli_opts(trainer, *opts))


def read_log(folder):
    with open(os.path.join(folder, "log.txt")) as f:
        return f.read()


def tensorboard_scalars(folder):
    """{tag: [(step, value)]} of the TensorBoard event files in `folder`."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    events = EventAccumulator(str(folder))
    events.Reload()
    return {tag: [(e.step, e.value) for e in events.Scalars(tag)] for tag in events.Tags()["scalars"]}


def accuracy(log):
    return float(re.findall(r"^\* accuracy: ([\d.]+)%$", log, re.M)[-1])


@pytest.mark.parametrize("trainer", trainers())
def test_base_to_novel(trainer, data_root, tmp_path, capsys):
    root = tmp_path / "output" / "base2new"
    common = f"oxford_pets/shots_4/{trainer}/tiny/seed1"
    train_dir, test_dir = root / "train_base" / common, root / "test_new" / common
    base_acc = run(data_root, trainer, train_dir,
                   opts=["DATASET.NUM_SHOTS", 4, "DATASET.SUBSAMPLE_CLASSES", "base"])
    log = read_log(train_dir)
    assert "Engine: native" in log
    assert "SUBSAMPLE BASE CLASSES!" in log
    assert re.search(r"^=> result\n\* total: 9\n\* correct: \d+\n\* accuracy: [\d.]+%\n\* error: "
                     r"[\d.]+%\n\* macro_f1: [\d.]+%$", log, re.M)
    assert accuracy(log) == pytest.approx(base_acc, abs=0.05)
    name = registered_name(trainer)
    if trainer != "ZeroshotCLIP":
        assert re.search(r"^epoch \[1/1\] batch \[2/3\] time [\d.]+ \([\d.]+\) data [\d.]+ \([\d.]+\) "
                         r"loss [\d.]+ \([\d.]+\) .*lr 1\.0000e-05 eta \d+:\d\d:\d\d$", log, re.M)
        assert "Finish training\nDeploy the last-epoch model\nEvaluate on the *test* set" in log
        assert re.search(r"^Elapsed: \d+:\d\d:\d\d$", log, re.M)
        saved = torch.load(train_dir / name / "model.pth.tar-1", weights_only=True)
        assert saved["epoch"] == 1 and saved["state_dict"]
        assert not any(k.startswith("clip.") for k in saved["state_dict"])
        assert (train_dir / name / "checkpoint").read_text().strip() == "model.pth.tar-1"
        # TensorBoard logs (a runtime dependency): one train/lr point per iteration (3), the test accuracy.
        scalars = tensorboard_scalars(train_dir / "tensorboard")
        assert [step for step, _ in scalars["train/lr"]] == [0, 1, 2]
        assert scalars["test/accuracy"] == [(0, pytest.approx(base_acc))]  # at the last epoch index

    novel_acc = run(data_root, trainer, test_dir, "--eval-only", "--model-dir", str(train_dir),
                    "--load-epoch", "1", opts=["DATASET.NUM_SHOTS", 4, "DATASET.SUBSAMPLE_CLASSES", "new"])
    log = read_log(test_dir)
    assert "SUBSAMPLE NEW CLASSES!" in log and "* total: 9" in log
    if trainer != "ZeroshotCLIP":
        assert 'model.pth.tar-1" (epoch = 1)' in log
    assert accuracy(log) == pytest.approx(novel_acc, abs=0.05)

    capsys.readouterr()
    parse_test_res.main(["--table", "base2new", "--root", str(root), "--trainer", trainer])
    out = capsys.readouterr().out
    b, n = accuracy(read_log(train_dir)), accuracy(read_log(test_dir))
    hm = 2 * b * n / (b + n) if b + n else 0.0
    row = next(line for line in out.splitlines() if line.startswith(f"| {trainer} |"))
    cells = [cell.strip() for cell in row.strip("|").split("|")]
    assert cells[2:] == ["1"] + [f"{b:.2f}", f"{n:.2f}", f"{hm:.2f}"] * 2  # oxford_pets, and the average


def final_state(folder, trainer, epoch):
    return torch.load(os.path.join(folder, registered_name(trainer), f"model.pth.tar-{epoch}"),
                      weights_only=True)["state_dict"]


@pytest.mark.parametrize("trainer,opts", [
    ("RESTORE_p", ["TRAINER.PROMPTSRC.GPA_MEAN", 2.0, "TRAINER.PROMPTSRC.GPA_STD", 1.0]),
    ("CoCoOp", []),
])
def test_resume_equals_uninterrupted(trainer, opts, data_root, tmp_path, monkeypatch):
    opts = ["OPTIM.MAX_EPOCH", 3, "TRAIN.CHECKPOINT_FREQ", 1, "OPTIM.WARMUP_EPOCH", 0,
            "DATASET.NUM_SHOTS", 4, "DATASET.SUBSAMPLE_CLASSES", "base", *opts]
    whole = run(data_root, trainer, tmp_path / "whole", opts=opts)

    original = Trainer.run_epoch

    def interrupted(self):
        if self.epoch == 2:
            raise KeyboardInterrupt("stopped after two epochs")
        return original(self)

    monkeypatch.setattr(Trainer, "run_epoch", interrupted)
    with pytest.raises(KeyboardInterrupt):
        run(data_root, trainer, tmp_path / "parts", opts=opts)
    assert os.path.isfile(tmp_path / "parts" / registered_name(trainer) / "model.pth.tar-2")
    monkeypatch.setattr(Trainer, "run_epoch", original)

    resumed = run(data_root, trainer, tmp_path / "parts", opts=opts)
    logs = [f for f in os.listdir(tmp_path / "parts") if f.startswith("log.txt-")]
    assert len(logs) == 1  # the first log is kept, the resumed run writes a timestamped one
    log = open(tmp_path / "parts" / logs[0]).read()
    assert "Found checkpoint at" in log and "resuming at epoch 3" in log
    assert "epoch [1/3]" not in log and "epoch [3/3]" in log
    cfg = make_cfg(trainer, data_root, tmp_path, *opts)
    assert f"lr {epoch_lr(cfg.OPTIM, 2):.4e} eta" in log  # the schedule resumed at epoch 3
    assert resumed == whole
    a, b = final_state(tmp_path / "whole", trainer, 3), final_state(tmp_path / "parts", trainer, 3)
    assert a.keys() == b.keys()
    for k in a:
        if torch.is_tensor(a[k]):
            assert torch.equal(a[k], b[k]), k


def test_eval_only_loads_requested_epoch(data_root, tmp_path, capsys):
    trainer = "MaPLe"
    opts = ["OPTIM.MAX_EPOCH", 2, "TRAIN.CHECKPOINT_FREQ", 1, "OPTIM.WARMUP_EPOCH", 0,
            "DATASET.NUM_SHOTS", 4, "DATASET.SUBSAMPLE_CLASSES", "base"]
    run(data_root, trainer, tmp_path / "train", opts=opts)
    first, last = final_state(tmp_path / "train", trainer, 1), final_state(tmp_path / "train", trainer, 2)
    assert not torch.equal(first["prompt_learner.ctx"], last["prompt_learner.ctx"])

    cfg = make_cfg(trainer, data_root, tmp_path / "eval", "DATASET.NUM_SHOTS", 4,
                   "DATASET.SUBSAMPLE_CLASSES", "new")
    set_random_seed(1)
    t = Trainer(cfg)
    t.load_model(str(tmp_path / "train"), epoch=1)
    state = t.model.state_to_save()
    for k, v in first.items():
        assert torch.equal(state[k], v), k

    run(data_root, trainer, tmp_path / "eval1", "--eval-only", "--model-dir", str(tmp_path / "train"),
        "--load-epoch", "1", opts=["DATASET.NUM_SHOTS", 4, "DATASET.SUBSAMPLE_CLASSES", "new"])
    assert 'MultiModalPromptLearner/model.pth.tar-1" (epoch = 1)' in read_log(tmp_path / "eval1")

    capsys.readouterr()
    with pytest.raises(SystemExit) as exit_info:
        run(data_root, trainer, tmp_path / "eval3", "--eval-only", "--model-dir", str(tmp_path / "train"),
            "--load-epoch", "3", opts=["DATASET.NUM_SHOTS", 4, "DATASET.SUBSAMPLE_CLASSES", "new"])
    assert exit_info.value.code == 1
    err = capsys.readouterr().err
    assert "No model at" in err and "model.pth.tar-3" in err and "Saved epochs there: 1, 2" in err


@pytest.mark.parametrize("trainer", trainers())
def test_cached_text_equals_per_batch(trainer, data_root, tmp_path):
    cfg = make_cfg(trainer, data_root, tmp_path, "DATASET.SUBSAMPLE_CLASSES", "new")
    set_random_seed(0)
    t = Trainer(cfg)
    g = torch.Generator().manual_seed(3)
    with torch.no_grad():  # move the prompts away from their init, so that they matter
        for p in t.model.trainable_parameters():
            p.add_(torch.randn(p.shape, generator=g) * 0.3)
    t.set_model_mode("eval")

    calls = {"n": 0}
    encode_text = t.model.encode_text

    def counting(*a, **k):
        calls["n"] += 1
        return encode_text(*a, **k)

    t.model.encode_text = counting
    images = [b["img"] for b in t.test_loader]
    assert len(images) >= 2
    with torch.no_grad():
        per_batch = torch.cat([t.model(x) for x in images])
        n_per_batch = calls["n"]
        calls["n"] = 0
        with t.model.cached_text_features():
            cached = torch.cat([t.model(x) for x in images])
    torch.testing.assert_close(cached, per_batch, rtol=1e-5, atol=1e-5)
    if isinstance(t.model, CoCoOp):  # prompts depend on the image (CoCoOp, CoCoOp_DePT): nothing to cache
        assert calls["n"] == len(images)
    else:
        assert n_per_batch == len(images) and calls["n"] == 1
    labels = torch.cat([b["label"] for b in t.test_loader])
    acc = t.test()
    assert acc == pytest.approx(100.0 * (per_batch.argmax(1) == labels).float().mean().item())


def test_non_finite_loss_is_one_clear_error(data_root, tmp_path, monkeypatch, capsys):
    from restore.methods import PromptedCLIP

    def nan_loss(self, batch):
        loss = sum(p.sum() for p in self.trainable_parameters()) * float("nan")
        return loss, {"loss": loss, "ce": loss}

    monkeypatch.setattr(PromptedCLIP, "loss", nan_loss)
    with pytest.raises(SystemExit) as exit_info:
        run(data_root, "CoOp", tmp_path / "nan", opts=["DATASET.NUM_SHOTS", 4])
    assert exit_info.value.code == 1
    err = capsys.readouterr().err
    assert "epoch 1/1, batch 1/" in err and "Lower OPTIM.LR" in err and "Traceback" not in err
    assert "ce nan" in err  # the loss terms, which say which one failed
    assert "Lower OPTIM.LR" in read_log(tmp_path / "nan")
    close_logger()


def test_best_val_and_checkpoint_freq(data_root, tmp_path):
    opts = ["OPTIM.MAX_EPOCH", 3, "TRAIN.CHECKPOINT_FREQ", 2, "TEST.FINAL_MODEL", "best_val",
            "DATASET.NUM_SHOTS", 4, "DATASET.SUBSAMPLE_CLASSES", "base"]
    run(data_root, "CoOp", tmp_path / "bv", opts=opts)
    save_dir = tmp_path / "bv" / "prompt_learner"
    # Every CHECKPOINT_FREQ epochs and the last one; the best on val as model-best.pth.tar.
    assert sorted(os.listdir(save_dir)) == ["checkpoint", "model-best.pth.tar", "model.pth.tar-2",
                                            "model.pth.tar-3"]
    log = read_log(tmp_path / "bv")
    assert log.count("Evaluate on the *val* set") == 3
    assert "Deploy the model with the best val performance" in log
    assert torch.load(save_dir / "model-best.pth.tar", weights_only=True)["val_result"] is not None
