"""The shell scripts with the native engine: output layout of docs/REPRODUCING.md section 7, the DATA check, overrides."""
import os
import shutil
import subprocess

import pytest

from test_engine_fakes import ROOT, make_oxford_pets

pytestmark = pytest.mark.skipif(shutil.which("bash") is None, reason="needs bash")

TINY = ["MODEL.BACKBONE.NAME", "tiny-random", "INPUT.SIZE", "(32,32)", "DATALOADER.NUM_WORKERS", "0",
        "DATALOADER.TEST.BATCH_SIZE", "8", "OPTIM.MAX_EPOCH", "1", "TRAINER.MAPLE.PROMPT_DEPTH", "2",
        "USE_CUDA", "False"]


def bash(script, *args, cwd=ROOT, **env):
    full_env = {k: v for k, v in os.environ.items() if k not in ("DATA", "OUTPUT", "SHOTS")}
    full_env.update(env)
    return subprocess.run(["bash", os.path.join(ROOT, "scripts", script), *args], cwd=cwd, env=full_env,
                          capture_output=True, text=True, timeout=300)


def test_data_must_be_set():
    proc = bash("restore/base2new_train.sh", "oxford_pets", "1")
    assert proc.returncode == 1 and "DATA is not set" in proc.stderr
    proc = bash("restore/base2new_train.sh", "oxford_pets", "1", DATA="/no/such/folder")
    assert proc.returncode == 1 and "is not a folder" in proc.stderr
    proc = bash("maple/xd_test.sh", "no_such_dataset", "1", DATA="/tmp")
    assert proc.returncode == 1 and "Valid datasets:" in proc.stderr and "oxford_pets" in proc.stderr
    proc = bash("maple/base2new_test.sh", "oxford_pets")
    assert proc.returncode == 1 and "usage:" in proc.stderr


def test_restore_base2new_scripts(tmp_path):
    """Run from another folder with relative DATA and OUTPUT: both are the caller's (train.py runs in the
    repository)."""
    make_oxford_pets(str(tmp_path / "data"))
    env = dict(DATA="data", OUTPUT="./output", SHOTS="4", ENGINE="native", cwd=tmp_path)
    proc = bash("restore/base2new_train.sh", "oxford_pets", "1", *TINY, **env)
    assert proc.returncode == 0, proc.stderr[-2000:]
    common = "oxford_pets/shots_4/RESTORE_m/vit_b16_c2_ep10_batch4_2ctx/seed1"
    train_dir = tmp_path / "output" / "base2new" / "train_base" / common
    assert (train_dir / "MultiModalPromptLearner" / "model.pth.tar-1").is_file()
    proc = bash("restore/base2new_test.sh", "oxford_pets", "1", *TINY, **env)
    assert proc.returncode == 0, proc.stderr[-2000:]
    log = (tmp_path / "output" / "base2new" / "test_new" / common / "log.txt").read_text()
    assert "(epoch = 1)" in log and "* accuracy:" in log
    again = bash("restore/base2new_test.sh", "oxford_pets", "1", *TINY, **env)
    assert again.returncode == 0 and "Skip this job" in again.stdout
    # The "finished" check compares the evaluated epoch and the overrides (train.py --check-finished).
    other_epoch = bash("restore/base2new_test.sh", "oxford_pets", "1", *TINY, LOADEP="2", **env)
    assert other_epoch.returncode == 1 and "Skip" not in other_epoch.stdout
    assert "--load-epoch (LOADEP) 1 (saved) vs 2 (now)" in other_epoch.stderr
    override = bash("restore/base2new_test.sh", "oxford_pets", "1", *TINY, "TEST.PER_CLASS_RESULT",
                    "True", **env)
    assert override.returncode == 1
    assert "TEST.PER_CLASS_RESULT False (saved) vs True (now)" in override.stderr


def test_nproc_starts_train_py_under_torchrun(tmp_path):
    """NPROC=2: the scripts start train.py through torchrun with 2 processes per node (the command is
    recorded by a stand-in interpreter; the 2-process run itself is tested in test_distributed.py)."""
    import sys
    record = tmp_path / "argv.txt"
    fake = tmp_path / "python"
    fake.write_text(f'#!/bin/bash\nif [ "$1" = "-m" ] && [ "$2" = "torch.distributed.run" ]; then\n'
                    f'  echo "$@" > {record}; exit 0\nfi\nexec {sys.executable} "$@"\n')
    fake.chmod(0o755)
    make_oxford_pets(str(tmp_path / "data"))
    env = dict(DATA=str(tmp_path / "data"), OUTPUT=str(tmp_path / "output"), SHOTS="4", ENGINE="native",
               NPROC="2", PYTHON=str(fake))
    proc = bash("restore/base2new_train.sh", "oxford_pets", "1", *TINY, **env)
    assert proc.returncode == 0, proc.stderr[-2000:]
    argv = record.read_text().split()
    assert argv[:6] == ["-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", "train.py"]
    assert argv[6:8] == ["--engine", "native"] and "RESTORE_m" in argv


@pytest.mark.parametrize("script, args, error", [
    ("coop/base2new_train.sh", ["oxford_pets", "1", "OPTIM.MAX_EPOCH", "1", "DATASET.NUM_SHOTS", "2"],
     "DATASET.NUM_SHOTS 2 as an override: use SHOTS=2 (it also names the output folder, shots_<SHOTS>)."),
    ("maple/xd_test.sh", ["imagenet_a", "1", "SEED", "3"],
     "SEED 3 as an override: give 3 as the SEED argument (it also names the output folder, seed<SEED>)."),
    ("restore/base2new_test.sh", ["oxford_pets", "1", "DATASET.SUBSAMPLE_CLASSES", "all"],
     "DATASET.SUBSAMPLE_CLASSES all as an override: the base-to-novel scripts train on the base classes "
     "and test on the new ones (all classes: xd_train.sh)."),
    ("coop/main.sh", ["caltech101", "rn50", "end", "16", "16", "False", "DATASET.NUM_SHOTS", "2"],
     "DATASET.NUM_SHOTS 2 as an override: give 2 as the SHOTS argument."),
    ("zsclip/zeroshot.sh", ["caltech101", "rn50", "OUTPUT_DIR", "x"],
     "OUTPUT_DIR x as an override: the scripts name the output folder; use OUTPUT=<folder> for another root."),
])
def test_overrides_of_what_the_scripts_set_are_refused(script, args, error, tmp_path):
    """A trailing override of a key the script sets (and names the output folder after) would run one
    thing and file it under another: refused before anything runs, naming the way to set it."""
    proc = bash(script, *args, DATA=str(tmp_path), OUTPUT=str(tmp_path / "output"))
    assert proc.returncode == 1 and proc.stderr == f"Error: {error}\n"
    assert not (tmp_path / "output").exists()


# ---------------------------------------------------------------------------------- bad input
@pytest.mark.parametrize("script, args, env, line", [
    ("restore/base2new_train.sh", ["imagenet", "1", "TRAINER.X"], {},
     "Error: Missing value for TRAINER.X (after DATASET SEED): config overrides are KEY VALUE pairs, "
     "e.g. OPTIM.MAX_EPOCH 5."),
    ("maple/xd_test.sh", ["imagenet", "1", "OPTIM.MAX_EPOCH", "OPTIM.LR", "0.1"], {},
     "Error: Missing value for OPTIM.MAX_EPOCH (after DATASET SEED): config overrides are KEY VALUE pairs, "
     "e.g. OPTIM.MAX_EPOCH 5."),
    ("zsclip/zeroshot.sh", ["imagenet", "rn50", "OPTIM.LR"], {}, "Error: Missing value for OPTIM.LR (after "
                                                                "DATASET CFG)"),
    ("restore/base2new_test.sh", ["imagenet"], {}, "Error: Missing SEED; usage: bash scripts/restore/"
                                                   "base2new_test.sh DATASET SEED [KEY VALUE ...]"),
    ("restore/base2new_train.sh", ["imagenet", "one"], {}, "Error: SEED must be a whole number, got 'one' (e.g. "
                                                          "bash scripts/restore/base2new_train.sh imagenet 1)."),
    ("coop/base2new_train.sh", ["imagenet", "1"], {"SHOTS": "sixteen"},
     "Error: SHOTS must be a whole number, got 'sixteen' (e.g. SHOTS=16)."),
    ("coop/base2new_train.sh", ["imagenet", "1"], {"NPROC": "all"},
     "Error: NPROC must be a whole number, got 'all' (e.g. NPROC=4)."),
    ("coop/base2new_test.sh", ["imagenet", "1"], {"LOADEP": "last"},
     "Error: LOADEP must be a whole number, got 'last' (e.g. LOADEP=10)."),
    ("coop/main.sh", ["caltech101", "rn50", "end", "x", "16", "False"], {},
     "Error: NCTX must be a whole number, got 'x' (e.g. 16)."),
    ("coop/main.sh", ["caltech101", "rn50", "end", "16", "1", "False"], {"SEEDS": "1 two"},
     "Error: a seed of SEEDS must be a whole number, got 'two' (e.g. SEEDS=\"1 2 3\")."),
])
def test_bad_script_input_is_one_line(script, args, env, line):
    """A KEY without its VALUE, a missing argument, a word where a number goes: one line naming it and the
    fix, exit status 1, before any data is looked for (DATA is unset) or train.py runs."""
    proc = bash(script, *args, **env)
    assert proc.returncode == 1 and proc.stdout == ""
    line = line.replace("bash scripts/", f"bash {ROOT}/scripts/")  # the script as it was run
    assert proc.stderr.splitlines() == [proc.stderr.strip()] and proc.stderr.startswith(line)


# ------------------------------------------------------------------------- stop signals reach train.py
FAKE_TRAIN = """import os, signal, sys, time
def stop(signum, frame):
    with open(os.environ["STOPPED"], "a") as f:
        f.write(signal.Signals(signum).name + "\\n")
    sys.exit(128 + signum)
for name in ("SIGTERM", "SIGUSR1", "SIGHUP"):
    signal.signal(getattr(signal, name), stop)
with open(os.environ["STARTED"], "w") as f:
    f.write(str(os.getpid()))
time.sleep(60)
"""


def alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def wait_for(path, proc, seconds=60):
    """Wait until `path` exists (False when `proc` ended first or the time ran out)."""
    import time
    end = time.time() + seconds
    while not os.path.exists(path):
        if proc.poll() is not None or time.time() > end:
            return False
        time.sleep(0.05)
    return True


@pytest.mark.parametrize("script, signum", [
    ("restore/base2new_train.sh", "SIGTERM"),
    ("coop/main.sh", "SIGHUP"),                 # a loop over the seeds
    ("restore/testbed_demo.sh", "SIGUSR1"),     # a script that runs scripts, then parse_test_res.py
])
def test_a_signal_to_a_script_reaches_train_py_and_stops_the_script(script, signum, tmp_path):
    """The signal sent to the script's process alone (kill PID, not its process group) reaches the train.py
    it runs (a stand-in that records it); the script waits for it to end, exits with 128 + the signal's
    number and starts nothing after it (no test step, no next seed)."""
    import signal
    import sys
    fake, calls = tmp_path / "python", tmp_path / "calls.txt"
    (tmp_path / "fake_train.py").write_text(FAKE_TRAIN)
    fake.write_text(f'#!/bin/bash\n[ "$1 $2" = "-m restore.cli" ] && exec {sys.executable} "$@"\n'
                    'for a in "$@"; do [ "$a" = --check-finished ] && exit 3; done\n'
                    'printf "%s\\n" "$*" >> "$CALLS"\n'
                    f'exec {sys.executable} {tmp_path / "fake_train.py"}\n')
    fake.chmod(0o755)
    started, stopped = tmp_path / "started", tmp_path / "stopped"
    env = {k: v for k, v in os.environ.items() if k not in ("DATA", "OUTPUT", "SHOTS", "SEEDS")}
    env.update(PYTHON=str(fake), CALLS=str(calls), STARTED=str(started), STOPPED=str(stopped),
               DATA=str(tmp_path), OUTPUT=str(tmp_path / "output"))
    args = {"coop/main.sh": ["shapes", "rn50", "end", "4", "16", "False"]}.get(script, ["shapes", "1"])
    proc = subprocess.Popen(["bash", f"scripts/{script}", *args], cwd=ROOT, env=env, start_new_session=True,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    pid = None
    try:
        assert wait_for(started, proc), proc.communicate()[1][-2000:]
        pid = int(started.read_text())
        os.kill(proc.pid, getattr(signal, signum))
        assert proc.wait(timeout=30) == 128 + getattr(signal, signum)
        assert stopped.read_text() == f"{signum}\n" and not alive(pid)
        assert len(calls.read_text().splitlines()) == 1  # nothing ran after the stopped train.py
    finally:
        for p in (proc.pid, pid):
            if p and alive(p):
                os.kill(p, signal.SIGKILL)
        proc.wait(timeout=10)


def test_sigterm_to_a_script_stops_train_py_resumably(tmp_path, capsys):
    """A real run (tiny CLIP, CoOp): SIGTERM to the script while train.py trains; train.py saves its state
    and exits, the script with it (143); the train.py command the script ran then resumes and finishes the
    run (here in this process: a third start of torch would double the test's time)."""
    import signal
    make_oxford_pets(str(tmp_path / "data"))
    args = ["oxford_pets", "1", *TINY, "OPTIM.MAX_EPOCH", "4", "TRAIN.PRINT_FREQ", "1",
            "DATALOADER.TRAIN_X.BATCH_SIZE", "2"]  # 6 steps an epoch, each a check for the stop flag
    env = {k: v for k, v in os.environ.items() if k not in ("DATA", "OUTPUT", "SHOTS")}
    env.update(DATA=str(tmp_path / "data"), OUTPUT=str(tmp_path / "output"), SHOTS="4", ENGINE="native",
               PYTHONUNBUFFERED="1")  # its log lines as they are written
    proc = subprocess.Popen(["bash", "scripts/coop/base2new_train.sh", *args], cwd=ROOT, env=env,
                            start_new_session=True, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        seen = []
        for line in proc.stdout:  # the script's output, then train.py's log: stop it during its first epoch
            seen.append(line)
            if line.startswith("epoch [1/4] batch [1/6]"):
                os.kill(proc.pid, signal.SIGTERM)
                break
        rest = proc.stdout.read()
        assert proc.wait(timeout=120) == 143, rest[-2000:]
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    out = tmp_path / "output" / "base2new" / "train_base" / "oxford_pets" / "shots_4" / "CoOp"
    run = next(out.iterdir()) / "seed1"
    # train.py's own line (it saved, then exited: no process of the run is left), before the run's end
    assert "Stopped by SIGTERM " in rest and "Finish training" not in rest
    assert not [p for p in os.listdir("/proc") if p.isdigit() and str(run).encode() in proc_cmdline(p)]
    import train
    command = next(line for line in seen if line.startswith("+ python train.py ")).split()[3:]
    capsys.readouterr()
    train.main(command)
    again = capsys.readouterr().out
    assert "(will resume training)" in again and "; resuming at epoch " in again and "Finish training" in again
    assert (run / "prompt_learner" / "model.pth.tar-4").is_file()


def proc_cmdline(pid):
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return f.read()
    except OSError:
        return b""
