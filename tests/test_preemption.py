"""A signal saves a resumable state and stops the run; the rerun ends as the uninterrupted run (issue 24).

Real signals (os.kill of the running process, sent from inside a chosen training step so that the stop
point is known) to real train.py runs (in this process; exit status 128 + signal):
- native engine, mid-epoch: the check point after the signal (TRAIN.PRINT_FREQ) saves
  `interrupted.pth.tar` (not recorded as the latest checkpoint: no finished run is taken from it), exits 143;
  the rerun resumes at the next batch with the sampler's order, the random states and the log's running
  means, and ends bit for bit as the uninterrupted run (NUM_WORKERS 0, random crops and flips); the
  mid-epoch file is gone once its epoch ends.
- native engine, in an epoch's last check: the epoch's own checkpoint, then stop.
- Dassl engine (with Dassl installed): the next epoch's end.
- A mid-epoch state over another process count is refused; an epoch's state gives a note.
torchrun (2 gloo processes, one rank signalled) is in test_distributed.py; a submitit task in
test_cluster.py.
"""
import os
import re
import signal

import pytest
import torch

import train
from restore.engine import Trainer, registered_name
from restore.engine.checkpoint import INTERRUPTED
from test_engine_fakes import cli_opts, make_oxford_pets

DATASET_CFG = "configs/datasets/oxford_pets.yaml"
NAME = registered_name("CoOp")
# 6 classes x 2 shots, batch 4: 3 steps per epoch; random crops and flips (the RNG matters).
OPTS = ("DATASET.NUM_SHOTS", 2, "OPTIM.MAX_EPOCH", 2, "TRAIN.PRINT_FREQ", 1)


@pytest.fixture(scope="module")
def data_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("data")
    make_oxford_pets(str(root))
    return str(root)


def argv(data_root, out, engine="native", trainer="CoOp"):
    return ["--root", data_root, "--seed", "1", "--trainer", trainer, "--engine", engine,
            "--dataset-config-file", DATASET_CFG, "--output-dir", str(out), *cli_opts(trainer, *OPTS)]


def signalled(monkeypatch, cls, epoch, batch, signum=signal.SIGTERM):
    """Make the run send itself `signum` during step (epoch, batch) (0-based), once."""
    original = cls.forward_backward
    sent = []

    def forward_backward(self, batch_):
        if (self.epoch, self.batch_idx) == (epoch, batch) and not sent:
            sent.append(True)
            os.kill(os.getpid(), signum)
        return original(self, batch_)

    monkeypatch.setattr(cls, forward_backward.__name__, forward_backward)
    return sent


def final_state(out, epoch=2):
    return torch.load(os.path.join(out, NAME, f"model.pth.tar-{epoch}"), weights_only=True)


def assert_same_state(a, b):
    assert a["state_dict"].keys() == b["state_dict"].keys()
    assert all(torch.equal(a["state_dict"][k], b["state_dict"][k]) for k in a["state_dict"])
    assert a["optimizer"]["state"].keys() == b["optimizer"]["state"].keys()
    for k in a["optimizer"]["state"]:
        assert all(torch.equal(torch.as_tensor(v), torch.as_tensor(b["optimizer"]["state"][k][n]))
                   for n, v in a["optimizer"]["state"][k].items())
    assert torch.equal(a["rng"]["torch"], b["rng"]["torch"])


@pytest.fixture(scope="module")
def whole(data_root, tmp_path_factory):
    out = tmp_path_factory.mktemp("whole") / "run"
    train.main(argv(data_root, out))
    return out


def stop(args, capsys):
    capsys.readouterr()
    with pytest.raises(SystemExit) as info:
        train.main(args)
    assert info.value.code == 128 + signal.SIGTERM
    return capsys.readouterr().out


def test_mid_epoch_stop_resumes_bit_for_bit(data_root, whole, tmp_path, capsys, monkeypatch):
    out = tmp_path / "run"
    with monkeypatch.context() as patch:
        signalled(patch, Trainer, epoch=1, batch=0)  # during step 1 of epoch 2: stops after it (PRINT_FREQ 1)
        text = stop(argv(data_root, out), capsys)
    assert "Stopped by SIGTERM at epoch 2/2, batch 1/3; the run resumes from there" in text
    saved = torch.load(out / NAME / INTERRUPTED, weights_only=True)
    assert saved["epoch"] == 1 and saved["interrupted"]["batch"] == 1 and saved["interrupted"]["world_size"] == 1
    assert os.listdir(out / NAME) == [INTERRUPTED]  # no `checkpoint` record: nothing takes it for a finished run
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL  # the handler is bound only while training

    capsys.readouterr()
    train.main(argv(data_root, out))
    resumed = capsys.readouterr().out
    assert "resuming at epoch 2, batch 2/3 (lr" in resumed
    assert f"Removed the mid-epoch checkpoint {out / NAME / INTERRUPTED}" in resumed
    assert not os.path.exists(out / NAME / INTERRUPTED)
    assert_same_state(final_state(whole), final_state(out))
    # The resumed epoch's log line averages over the whole epoch, as the uninterrupted run's.
    line = [x for x in resumed.splitlines() if x.startswith("epoch [2/2] batch [3/3]")][0]
    reference = [x for x in open(whole / "log.txt").read().splitlines() if x.startswith("epoch [2/2] batch [3/3]")][0]
    assert re.search(r" (loss .* lr \S+) ", line)[1] == re.search(r" (loss .* lr \S+) ", reference)[1]


def test_stop_at_an_epochs_last_check_saves_that_epoch(data_root, whole, tmp_path, capsys, monkeypatch):
    out = tmp_path / "run"
    with monkeypatch.context() as patch:
        signalled(patch, Trainer, epoch=0, batch=2)  # the epoch's last step
        text = stop(argv(data_root, out), capsys)
    assert "Stopped by SIGTERM after epoch 1/2" in text
    assert sorted(os.listdir(out / NAME)) == ["checkpoint", "model.pth.tar-1"]
    train.main(argv(data_root, out))
    assert_same_state(final_state(whole), final_state(out))


def test_a_mid_epoch_state_needs_the_same_process_count(data_root, tmp_path, capsys, monkeypatch, caplog):
    """Saved by 2 processes (the record says so): refused over 1; an epoch's state of 2 gets a note."""
    out = tmp_path / "run"
    with monkeypatch.context() as patch:
        signalled(patch, Trainer, epoch=0, batch=0)
        stop(argv(data_root, out), capsys)
    path = out / NAME / INTERRUPTED
    saved = torch.load(path, weights_only=True)
    saved["interrupted"]["world_size"] = 2
    torch.save(saved, path)
    capsys.readouterr()
    with pytest.raises(SystemExit) as info:
        train.main(argv(data_root, out))
    assert info.value.code == 1
    err = capsys.readouterr().err
    assert (f"Error: {path} is a mid-epoch state saved by a run over 2 process(es); this run has 1. Each process "
            f"holds its share of the epoch's batches: resume over 2 (torchrun --nproc_per_node 2), or delete "
            f"{path} to continue from the last finished epoch.") in err
    from restore.engine.core import EngineCore
    del saved["interrupted"]
    saved["rng_ranks"] = [saved["rng"], saved["rng"]]
    with caplog.at_level("WARNING"):
        EngineCore._check_process_count("epoch.pth", saved)
    assert "Note: epoch.pth was saved by a run over 2 process(es); this run continues over 1." in caplog.text


def test_stop_signals_are_checked_and_can_be_none(data_root, tmp_path, capsys):
    capsys.readouterr()
    with pytest.raises(SystemExit):
        train.main(argv(data_root, tmp_path / "bad") + ["TRAIN.STOP_SIGNALS", "['SIGTERM', 'SIGFOO']"])
    assert "TRAIN.STOP_SIGNALS is ['SIGTERM', 'SIGFOO']; it must hold signal names" in capsys.readouterr().err
    from restore.engine.flags import RunFlags
    from restore.engine.stop import StopSignals
    before = signal.getsignal(signal.SIGUSR1)
    with StopSignals([], RunFlags("cpu")):
        assert signal.getsignal(signal.SIGUSR1) is before


def test_the_sweep_plan_makes_every_training_step_resumable():
    import argparse

    from sweep.plan import plan
    args = argparse.Namespace(protocols=["base2new", "xd"], seeds=[1], methods=["CoOp"], datasets=["shapes"],
                              output="/o", data="/d", ablations=[], fast_trace=[])
    steps = [step for _, job in plan(args) for step in job]
    trains = [a for _, a in steps if "--eval-only" not in a]
    assert len(trains) == 2
    for a in trains:
        assert a[a.index("TRAIN.CHECKPOINT_FREQ") + 1] == "1"


@pytest.mark.skipif(not __import__("trainers").DASSL_AVAILABLE, reason="the Dassl engine needs Dassl")
def test_dassl_engine_stops_at_the_epochs_end(data_root, tmp_path, capsys, monkeypatch):
    import trainers
    whole_dassl = tmp_path / "whole"
    train.main(argv(data_root, whole_dassl, engine="dassl"))
    out = tmp_path / "run"
    with monkeypatch.context() as patch:
        signalled(patch, trainers.PromptTrainer, epoch=0, batch=1)
        text = stop(argv(data_root, out, engine="dassl"), capsys)
    assert "Stopped by SIGTERM after epoch 1/2" in text
    assert sorted(os.listdir(out / NAME)) == ["checkpoint", "model.pth.tar-1"]
    train.main(argv(data_root, out, engine="dassl"))
    assert_same_state(final_state(whole_dassl), final_state(out))
