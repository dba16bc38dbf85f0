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
