"""The native engine's progress line: the time left from measured epoch times (not from the current
epoch's batches), and one hint when the machine is oversubscribed; Dassl's own log lines stay as they were."""
import os
import re

import train
from restore.engine import progress
from restore.engine.progress import WINDOW, EpochProgress, duration, eta_seconds, oversubscription_hint, recent
from test_engine_fakes import cli_opts, make_oxford_pets


class Clock:
    """A clock that reads the next of the given times."""

    def __init__(self, *times):
        self.times = list(times)

    def __call__(self):
        return self.times.pop(0)


def lines(capsys):
    return capsys.readouterr().out.splitlines()


def test_eta_is_the_mean_of_recent_epochs_times_the_epochs_left():
    assert eta_seconds([10.0], 4) == 40.0  # after the first epoch, from the first epoch
    assert eta_seconds([10.0, 20.0], 2) == 30.0  # with one other: 2 * mean(10, 20)
    # Then without the first (the run's start-up): 3 * mean(20, 30).
    assert eta_seconds([10.0, 20.0, 30.0], 3) == 75.0
    # And only the last WINDOW (5) epochs: 1 * mean(3, 4, 5, 6, 7).
    assert WINDOW == 5 and eta_seconds([600.0, 1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0], 1) == 5.0
    assert eta_seconds([9.0, 1.0, 1.0, 4.0], 2, window=2) == 5.0
    assert recent([1, 2, 3, 4, 5, 6, 7, 8]) == [4, 5, 6, 7, 8]
    assert recent([1]) == [1] and recent([1, 2]) == [1, 2] and recent([1, 2, 3]) == [2, 3]
    assert duration(3725.4) == "1:02:05" and duration(0.4) == "0:00:00" and duration(59.6) == "0:01:00"


def test_progress_lines_from_the_clock(capsys):
    # Construction at t=100; epochs end at 110, 130, 160, 170: they took 10, 20, 30, 10 s.
    p = EpochProgress(max_epoch=4, clock=Clock(100.0, 110.0, 130.0, 160.0, 170.0), load=lambda: 0.0,
                      cores=2, threads=2)
    for epoch in range(4):
        p.epoch_done(epoch)
    assert lines(capsys) == [
        "Progress: epoch 1/4 took 0:00:10; 3 epochs left, about 0:00:30 (from epoch 1)",
        "Progress: epoch 2/4 took 0:00:20; 2 epochs left, about 0:00:30 (from epochs 1-2)",
        "Progress: epoch 3/4 took 0:00:30; 1 epoch left, about 0:00:25 (from epochs 2-3)",
        "Progress: epoch 4/4 took 0:00:10",
    ]


def test_a_resumed_run_counts_from_its_own_first_epoch(capsys):
    p = EpochProgress(max_epoch=10, clock=Clock(0.0, 7200.0, 10800.0), load=lambda: 0.0, cores=2, threads=2)
    p.epoch_done(6), p.epoch_done(7)  # resumed at epoch 7 of 10
    assert lines(capsys) == ["Progress: epoch 7/10 took 2:00:00; 3 epochs left, about 6:00:00 (from epoch 7)",
                             "Progress: epoch 8/10 took 1:00:00; 2 epochs left, about 3:00:00 (from epochs 7-8)"]


def test_oversubscription_hint_only_above_the_cores():
    assert oversubscription_hint(None, cores=2, threads=2) is None
    assert oversubscription_hint(2.0, cores=2, threads=2) is None
    hint = oversubscription_hint(5.26, cores=2, threads=2)
    assert hint == ("Note: this machine is oversubscribed (load average 5.3 on 2 cores; this run uses 2 threads), "
                    "so this run will be slower than on an idle machine: give each job its own cores "
                    "(`taskset -c 0 bash ...` runs on core 0 with one thread) or run fewer jobs at once.")
    assert oversubscription_hint(8.0, cores=2, threads=8).endswith(
        "slower than on an idle machine: set RESTORE_NUM_THREADS to 2 or less.")


def test_hint_once_on_the_cpu_and_never_on_a_gpu(capsys):
    loads = iter([1.5, 3.5, 6.0, 6.0])
    p = EpochProgress(max_epoch=4, clock=Clock(*range(5)), load=lambda: next(loads), cores=2, threads=2)
    for epoch in range(4):
        p.epoch_done(epoch)
    out = lines(capsys)
    hints = [i for i, line in enumerate(out) if line.startswith("Note: this machine is oversubscribed")]
    assert hints == [2] and len(out) == 5  # after epoch 2 (the first load above 2 cores), not again
    assert "load average 3.5 on 2 cores" in out[2]

    p = EpochProgress(max_epoch=2, on_cpu=False, clock=Clock(*range(3)), load=lambda: 99.0, cores=2, threads=2)
    p.epoch_done(0), p.epoch_done(1)
    assert not any(line.startswith("Note:") for line in lines(capsys))


def test_a_training_run_logs_progress_after_dassls_lines(tmp_path, monkeypatch):
    """Through train.py: one progress line after each epoch's Dassl lines, which keep their format; the
    hint (load average patched) once, in log.txt as on the console."""
    monkeypatch.setattr(progress, "load_average", lambda: 1e6)
    make_oxford_pets(str(tmp_path / "data"))
    out = tmp_path / "out"
    train.main(["--root", str(tmp_path / "data"), "--seed", "1", "--trainer", "CoOp", "--engine", "native",
                "--dataset-config-file", "configs/datasets/oxford_pets.yaml", "--output-dir", str(out)]
               + cli_opts("CoOp", "OPTIM.MAX_EPOCH", 2, "DATASET.NUM_SHOTS", 2))
    log = (out / "log.txt").read_text()
    training = log[log.index("epoch [1/2]"):log.index("Finish training")].splitlines()
    dassl = re.compile(r"epoch \[[12]/2\] batch \[\d/\d\] time [\d.]+ \([\d.]+\) data [\d.]+ \([\d.]+\) "
                       r"loss [\d.]+ \([\d.]+\) (\w+ [\d.]+ \([\d.]+\) )*lr [\d.e+-]+ eta \d+:\d\d:\d\d")
    hint = f"Note: this machine is oversubscribed (load average 1000000.0 on {os.cpu_count()} cores; "
    kinds = ["dassl" if dassl.fullmatch(line) else "progress" if line.startswith("Progress: ") else
             "hint" if line.startswith(hint) else "checkpoint" if line.startswith("Checkpoint saved to ") else line
             for line in training]
    n = kinds.index("progress")  # Dassl lines per epoch
    assert n >= 1 and kinds == ["dassl"] * n + ["progress", "hint"] + ["dassl"] * n + ["checkpoint", "progress"]
    first, last = [line for line in training if line.startswith("Progress: ")]
    assert re.fullmatch(r"Progress: epoch 1/2 took \d+:\d\d:\d\d; 1 epoch left, about \d+:\d\d:\d\d "
                        r"\(from epoch 1\)", first)
    assert re.fullmatch(r"Progress: epoch 2/2 took \d+:\d\d:\d\d", last)
