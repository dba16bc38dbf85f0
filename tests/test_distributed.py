"""One run over 2 processes (torchrun, gloo on CPU) equals the 1-process run with the same global batch and
seed: 2-epoch testbed runs (no random augmentation) of CoOp, MaPLe, RESTORE_m and KgCoOp with the testbed's
Adam, and CoOp and ProGrad with SGD, end with the same learned state (to 1e-5) and the same test counts and
accuracy; a 2-process run killed after its first epoch and resumed under torchrun ends equal too; a
2-process run whose rank 1 gets SIGTERM mid-epoch stops on both ranks at the same step and resumes (over 2
processes only) to the uninterrupted 2-process run's state bit for bit; a rank that meets a truncated image
stops the run with one line, the last printed and in log.txt.
Plus the pieces on their own: the ranks' slices of the global batches, the batch-size rule, and
`--engine dassl` under torchrun."""
import dataclasses
import json
import os
import re
import shutil
import subprocess
import sys
import textwrap

import pytest
import torch

import train
from restore.distributed import shard_bounds
from restore.engine import registered_name
from restore.engine.checkpoint import INTERRUPTED
from restore.engine.sharding import GlobalBatchSlices
from restore.testbed import datasets as D
from restore.testbed import generate as G

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
pytestmark = pytest.mark.skipif(not torch.distributed.is_available(), reason="torch.distributed unavailable")

# Small: 2 shots of the 32 base classes of Shapes (64 images: 2 steps of 32 per epoch), 2 epochs,
# 3 test images per class (96 images: the 2 ranks read 48 each).
OPTS = ["DATASET.NUM_SHOTS", "2", "DATASET.SUBSAMPLE_CLASSES", "base", "OPTIM.MAX_EPOCH", "2",
        "DATALOADER.NUM_WORKERS", "0", "TRAIN.CHECKPOINT_FREQ", "1"]
RUNS = {
    "CoOp-adam": ("CoOp", []),
    "MaPLe-adam": ("MaPLe", []),
    "RESTORE_m-adam": ("RESTORE_m", ["TRAINER.RESTORE.FS.TEXT_CLASSES", "8"]),
    # the opt-in fast trace: image and class subsets drawn over the global batch / all classes
    "RESTORE_m-fast": ("RESTORE_m", ["TRAINER.RESTORE.FS.TEXT_CLASSES", "8",
                                     "TRAINER.RESTORE.FS.VISION_IMAGES", "8",
                                     "TRAINER.RESTORE.FS.PROMPT_FREE", "no_grad"]),
    "CoOp-sgd": ("CoOp", ["OPTIM.NAME", "sgd", "OPTIM.LR", "0.02"]),
    # KgCoOp's loss on the sharded class texts; ProGrad's update through the backward hook (both gradients
    # averaged over the ranks before the projection)
    "KgCoOp-adam": ("KgCoOp", []),
    "ProGrad-sgd": ("ProGrad", ["OPTIM.NAME", "sgd", "OPTIM.LR", "0.02"]),
}
SIGNALLED = RUNS["RESTORE_m-adam"][1] + ["TRAIN.PRINT_FREQ", "1"]  # checks after every step


@pytest.fixture(scope="module")
def data_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("testbed")
    spec = D.DATASETS["shapes"]
    D.DATASETS["shapes"] = dataclasses.replace(spec, n_train=2, n_val=1, n_test=3)
    try:
        G.generate(root, "shapes", seed=0)
    finally:
        D.DATASETS["shapes"] = spec
    return str(root)


def argv(data_root, trainer, out, extra, engine="native"):
    return ["--root", data_root, "--seed", "1", "--trainer", trainer, "--engine", engine,
            "--dataset-config-file", "configs/datasets/shapes.yaml",
            "--config-file", f"configs/trainers/{trainer}/testbed.yaml",
            "--output-dir", str(out), *OPTS, *extra]


# Runs train.main once per argv list in the same 2 torchrun processes (a launch costs ~20 s of imports):
# each prints "rc <i> <exit status>"; in the run marked "kill", rank 1 dies at the start of epoch 2; in the
# run marked "signal", rank 1 alone gets SIGTERM during the first step of epoch 2.
DRIVER = textwrap.dedent("""
    import json, os, signal, sys
    import train
    import restore.distributed
    from restore.engine import Trainer
    restore.distributed.close_distributed = lambda: None  # one process group for all the runs
    hand_over_error = restore.distributed.hand_over_error  # it leaves the group: only in the last run
    original, original_step = Trainer.run_epoch, Trainer.forward_backward
    runs = json.load(open(sys.argv[1]))
    for i, (args, kill) in enumerate(runs):
        restore.distributed.hand_over_error = hand_over_error if i == len(runs) - 1 else lambda *a, **k: None
        def run_epoch(self, kill=kill):
            if kill is True and self.epoch == 1 and os.environ["RANK"] == "1":
                os.kill(os.getpid(), signal.SIGKILL)  # torchrun then stops rank 0
            return original(self)
        def forward_backward(self, batch, kill=kill):
            if kill == "signal" and (self.epoch, self.batch_idx) == (1, 0) and os.environ["RANK"] == "1":
                os.kill(os.getpid(), signal.SIGTERM)
            return original_step(self, batch)
        Trainer.run_epoch, Trainer.forward_backward = run_epoch, forward_backward
        try:
            train.main(args)
            rc = 0
        except SystemExit as e:
            rc = e.code
        print(f"rc {i} {rc}", file=sys.stderr, flush=True)
""")


def torchrun(runs, tmp):
    """[(argv, kill)] run in one 2-process torchrun launch -> (its stderr, {index: exit status})."""
    (tmp / "driver.py").write_text(DRIVER)
    (tmp / "runs.json").write_text(json.dumps(runs))
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=ROOT)
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--standalone",
           str(tmp / "driver.py"), str(tmp / "runs.json")]
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    status = {}
    # Not anchored: the two ranks' lines can meet on one line of the shared stderr ("rc 0 0rc 0 0").
    for i, rc in re.findall(r"rc (\d+) (\d+|None)", proc.stderr):
        status.setdefault(int(i), []).append(rc)
    return proc.stderr, status


def state(folder, trainer, epoch=2):
    path = os.path.join(folder, registered_name(trainer), f"model.pth.tar-{epoch}")
    return torch.load(path, weights_only=True)


def result(log_file):
    log = open(log_file).read()
    return re.findall(r"^=> result\n\* total: ([\d,]+)\n\* correct: ([\d,]+)\n\* accuracy: ([\d.]+)%", log, re.M)


@pytest.fixture(scope="module")
def runs(data_root, tmp_path_factory):
    """Every 2-process run of this file, in two torchrun launches, and the 1-process references."""
    tmp = tmp_path_factory.mktemp("runs")
    first = [(argv(data_root, trainer, tmp / name, extra), False) for name, (trainer, extra) in RUNS.items()]
    first += [(argv(data_root, "CoOp", tmp / "odd", ["DATALOADER.TRAIN_X.BATCH_SIZE", "31"]), False),
              (argv(data_root, "CoOp", tmp / "dassl", [], engine="dassl"), False),
              (argv(data_root, "RESTORE_m", tmp / "signalled", SIGNALLED), "signal"),
              (argv(data_root, "RESTORE_m", tmp / "killed", RUNS["RESTORE_m-adam"][1]), True)]
    stderr, status = torchrun(first, tmp)
    assert os.path.isfile(tmp / "killed" / registered_name("RESTORE_m") / "model.pth.tar-1"), stderr[-3000:]
    assert not os.path.isfile(tmp / "killed" / registered_name("RESTORE_m") / "model.pth.tar-2")
    assert len(first) - 1 not in status  # killed: never finished
    assert status[len(first) - 2] == ["143", "143"], stderr[-3000:]  # signalled: both ranks stopped, 128 + 15
    signalled = [(tmp / "signalled" / registered_name("RESTORE_m") / INTERRUPTED).is_file()]
    with pytest.raises(SystemExit) as refused:  # a mid-epoch state of 2 processes, resumed by 1
        train.main(argv(data_root, "RESTORE_m", tmp / "signalled", SIGNALLED))
    signalled.append(refused.value.code)
    # Second launch: the two resumes, then a run whose rank 1 meets a truncated test image (last: it ends
    # the process group).
    broken = truncate_rank1_test_image(data_root, tmp / "broken-data")
    resume_stderr, resume_status = torchrun(
        [(argv(data_root, "RESTORE_m", tmp / "killed", RUNS["RESTORE_m-adam"][1]), False),
         (argv(data_root, "RESTORE_m", tmp / "signalled", SIGNALLED), False),
         (argv(str(tmp / "broken-data"), "CoOp", tmp / "broken", ["OPTIM.MAX_EPOCH", "1"]), False)], tmp)
    assert resume_status[0] == resume_status[1] == ["0", "0"], resume_stderr[-3000:]
    for name, (trainer, extra) in RUNS.items():
        train.main(argv(data_root, trainer, tmp / "one" / name, extra))
    return tmp, stderr, status, signalled, (resume_stderr, resume_status, broken)


def truncate_rank1_test_image(data_root, copy):
    """A copy of the data whose last base-class test image (in rank 1's evaluation shard) is cut to half
    its bytes; returns that image's path."""
    shutil.copytree(data_root, copy)
    folder = copy / "testbed_shapes"
    split = json.loads((folder / "split_zhou_TestbedShapes.json").read_text())
    base = [item for item in split["test"] if item[1] < 32]  # the 32 base classes of OPTS
    path = folder / "images" / base[-1][0]
    data = path.read_bytes()
    path.write_bytes(data[:len(data) // 2])
    return str(path)


# The bound for ProGrad's update (both gradients all-reduced before the projection); 1e-5 for the rest.
TOLERANCE = {"ProGrad-sgd": 1e-6}


def assert_same_run(one, two, trainer, log, tolerance=1e-5):
    a, b = state(one, trainer), state(two, trainer)
    assert a["state_dict"].keys() == b["state_dict"].keys()
    diff = max((a["state_dict"][k].float() - b["state_dict"][k].float()).abs().max().item()
               for k in a["state_dict"])
    print(f"{trainer}: max |1 process - 2 processes| of the learned state = {diff:.2e}")
    assert diff < tolerance
    assert len(b["rng_ranks"]) == 2 and "rng_ranks" not in a
    assert result(os.path.join(one, "log.txt")) == result(log) and len(result(log)) == 1
    assert result(log)[0][0] == "96"  # every test image once
    assert not os.path.exists(os.path.join(two, ".restore.lock"))


@pytest.mark.parametrize("name", list(RUNS))
def test_two_processes_equal_one(name, runs):
    tmp, stderr, status, _, _ = runs
    trainer = RUNS[name][0]
    assert status[list(RUNS).index(name)] == ["0", "0"], stderr[-3000:]
    log = open(tmp / name / "log.txt").read()
    assert "Distributed: 2 processes, global batch 32 (16 per process), evaluation sharded" in log
    assert_same_run(tmp / "one" / name, tmp / name, trainer, tmp / name / "log.txt", TOLERANCE.get(name, 1e-5))


def test_resume_after_kill_equals_one_process(runs):
    tmp, _, _, _, _ = runs
    out = tmp / "killed"
    resumed = [f for f in os.listdir(out) if f.startswith("log.txt-")]
    assert len(resumed) == 1 and "resuming at epoch 2" in open(out / resumed[0]).read()
    assert_same_run(tmp / "one" / "RESTORE_m-adam", out, "RESTORE_m", out / resumed[0])


def test_a_signal_to_one_rank_stops_both_at_the_same_step(runs):
    """SIGTERM to rank 1 during the first step of epoch 2: the stop request reaches rank 0 in the run's
    all-reduced flags, both save one mid-epoch state (each rank's batches and random states) after that step
    and exit 143; 1 process may not resume it; 2 processes resume it to the uninterrupted run's state, bit for
    bit."""
    tmp, _, _, (saved, refused), _ = runs
    out = tmp / "signalled"
    assert saved and refused == 1
    first = open(out / "log.txt").read()
    assert "Stopped by SIGTERM at epoch 2/2, batch 1/2" in first and "epoch [2/2] batch [2/2]" not in first
    refusal, resumed = [open(out / f).read() for f in sorted(os.listdir(out)) if f.startswith("log.txt-")]
    assert "mid-epoch state saved by a run over 2 process(es); this run has 1" in refusal
    assert "resuming at epoch 2, batch 2/2" in resumed
    assert not os.path.exists(out / registered_name("RESTORE_m") / INTERRUPTED)
    a, b = state(tmp / "RESTORE_m-adam", "RESTORE_m"), state(out, "RESTORE_m")
    assert all(torch.equal(a["state_dict"][k], b["state_dict"][k]) for k in a["state_dict"])
    assert all(torch.equal(x["torch"], y["torch"]) for x, y in zip(a["rng_ranks"], b["rng_ranks"]))


def test_bad_batch_and_dassl_stop_every_rank_with_one_line(runs):
    _, stderr, status, _, _ = runs
    i_odd, i_dassl = len(RUNS), len(RUNS) + 1  # the runs after RUNS in the first launch
    assert status[i_odd] == ["1", "1"] and status[i_dassl] == ["1", "1"]
    # Every rank reports its error, tagged with its rank (restore.logs). Not anchored: the two ranks' lines can
    # meet on one line of the shared stderr.
    lines = re.findall(r"(\[rank \d\]) Error: (.*?)(?=\[rank \d\] Error:|$)", stderr, re.M)
    odd = [r for r, x in lines if "BATCH_SIZE 31 is the global batch and does not divide over 2 processes" in x]
    dassl = [r for r, x in lines if "--engine dassl runs in one process, but torchrun started 2" in x]
    assert sorted(odd) == sorted(dassl) == ["[rank 0]", "[rank 1]"] and len(lines) == 4


def test_one_rank_error_is_the_last_line_and_in_log(runs):
    """Rank 1 alone meets a truncated image (issue: buried under rank 0's gloo traceback, missing from
    log.txt): its one line is the last any rank prints, log.txt ends with it, no rank shows a traceback."""
    tmp, _, _, _, (stderr, status, image) = runs
    assert status[2][-1] == "1" and set(status[2]) == {"1"}, stderr[-3000:]  # rank 0's rc line may be cut
    run = stderr[stderr.rindex("rc 1 0"):]  # the broken run's output (after the resumes')
    # No rank's traceback (torchrun's own ChildFailedError traceback follows, from its frames only).
    assert not re.search(r'File ".*(train|driver)\.py"|Connection closed', run), run[-3000:]
    lines = [x for x in run.splitlines() if x and not re.match(r"rc \d|\(set RESTORE_TRACEBACK", x)
             and "torch.distributed" not in x and not x.startswith(("[W", "W1", "E1", "I1"))]
    errors = [x for x in lines if "Error" in x]
    assert errors[0].startswith(f"[rank 1] Error: Cannot read image {image}"), run[-3000:]
    assert len([x for x in errors if x.startswith("[rank")]) == 1, run[-3000:]
    log = open(tmp / "broken" / "log.txt").read().rstrip("\n").splitlines()
    assert log[-1].startswith(f"[rank 1] Error: Cannot read image {image}"), log[-5:]
    assert not [f for f in os.listdir(tmp / "broken") if f.endswith(".error")]


def test_global_batch_slices():
    """Rank slices of each global batch, in one process's order (sequential), the last batch split."""
    base = torch.utils.data.SequentialSampler(range(10))
    ranks = [list(GlobalBatchSlices(base, 4, False, 2, r)) for r in range(2)]
    assert ranks[0] == [[0, 1], [4, 5], [8]] and ranks[1] == [[2, 3], [6, 7], [9]]
    assert [list(GlobalBatchSlices(base, 4, True, 2, r)) for r in range(2)] == [[[0, 1], [4, 5]], [[2, 3], [6, 7]]]
    assert [shard_bounds(7, 3, r) for r in range(3)] == [(0, 3), (3, 5), (5, 7)]


def test_random_order_equals_one_process():
    """Alone, the slices of a RandomSampler draw the same permutation from the global RNG as the sampler."""
    data = range(12)
    torch.manual_seed(5)
    expected = list(torch.utils.data.RandomSampler(data))
    torch.manual_seed(5)
    got = [i for b in GlobalBatchSlices(torch.utils.data.RandomSampler(data), 4, True, 1, 0) for i in b]
    assert got == expected


def test_global_batch_size_and_scope():
    from restore.checks import check_config
    from restore.config import get_cfg_default
    from restore.engine.parallel import global_batch_size
    from restore.errors import UserError
    cfg = get_cfg_default()
    cfg.DATALOADER.TRAIN_X.BATCH_SIZE = 12
    assert global_batch_size(cfg, 4) == 12
    with pytest.raises(UserError, match="BATCH_SIZE 12 is the global batch and does not divide over 5"):
        global_batch_size(cfg, 5)
    cfg.DATALOADER.TRAIN_X.BATCH_SIZE_SCOPE = "per_process"
    assert global_batch_size(cfg, 5) == 60
    cfg.DATALOADER.TRAIN_X.BATCH_SIZE_SCOPE = "globl"
    with pytest.raises(UserError, match="BATCH_SIZE_SCOPE is 'globl'; it must be one of global, per_process"):
        check_config(cfg)
