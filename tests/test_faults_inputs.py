"""Fault injection at the inputs and outputs of a run (issue 10, sections 4 and 5): each bad value or file
stops the run before any work with one line naming the key or the file (a run refused before it started
leaves no output folder behind; tests/test_cli_entry_points.py), and nothing is lost or left behind: one
run per output folder, temporary files of killed writes removed, a damaged newest checkpoint skipped for
the newest readable one, case-only typos suggested right.

All runs go through train.main in-process (native engine, tiny random CLIP, fake OxfordPets)."""
import errno
import json
import os
import signal
import socket
import subprocess
import sys
import time

import pytest
import torch

import train
from restore.data import Datum, save_pickle
from restore.engine import registered_name, Trainer
from restore.engine import checkpoint as ckpt
from restore.errors import UserError
from restore.lock import LOCK_NAME, OutputLock, output_lock
from test_engine_fakes import CLASSNAMES, ROOT, cli_opts, make_oxford_pets

DATASET_CFG = "configs/datasets/oxford_pets.yaml"
SHOTS = ["DATASET.NUM_SHOTS", 4]


@pytest.fixture
def data_root(tmp_path):
    make_oxford_pets(str(tmp_path / "data"))
    return str(tmp_path / "data")


def split_path(data_root):
    return os.path.join(data_root, "oxford_pets", "split_zhou_OxfordPets.json")


def run(data_root, out, trainer="CoOp", extra=(), opts=()):
    argv = ["--root", data_root, "--seed", "1", "--trainer", trainer, "--engine", "native",
            "--dataset-config-file", DATASET_CFG, "--output-dir", str(out), *extra]
    return train.main(argv + cli_opts(trainer, *opts))


def fails(capsys, *args, **kwargs):
    """Run, expect exit code 1; return the one error line (asserting it is one line, no traceback)."""
    capsys.readouterr()
    with pytest.raises(SystemExit) as info:
        run(*args, **kwargs)
    assert info.value.code == 1
    err = capsys.readouterr().err
    assert "Traceback" not in err
    lines = err.strip().splitlines()
    assert lines[-1] == "(set RESTORE_TRACEBACK=1 to see the traceback)"
    errors = [line for line in lines if line.startswith("Error: ")]
    assert len(errors) == 1 and lines[-2] == errors[0], err
    return errors[0]


def log_text(out):
    with open(os.path.join(out, "log.txt")) as f:
        return f.read()


def files_under(folder):
    return sorted(os.path.relpath(os.path.join(d, f), folder) for d, _, fs in os.walk(folder) for f in fs)


# -------------------------------------------------------------------------------- 4. bad values
def test_label_outside_classes_in_split_file(data_root, tmp_path, capsys):
    path = split_path(data_root)
    split = json.load(open(path))
    split["test"][4][1] = 99  # 6 classes: labels 0..5
    json.dump(split, open(path, "w"))
    line = fails(capsys, data_root, tmp_path / "out", opts=SHOTS)
    image = os.path.join(data_root, "oxford_pets", "images", split["test"][4][0])
    assert line == (f"Error: {path}: item 4 of 'test' ({image}, {split['test'][4][2]!r}) has label 99, outside "
                    f"0..5 (6 classes). Correct the label (labels are 0..number of classes - 1), or replace the "
                    f"file with the one from CoOp's DATASETS.md.")
    assert not (tmp_path / "out").exists()  # refused before the run started: nothing left behind


def test_label_outside_classes_in_fewshot_cache(data_root, tmp_path, capsys):
    cache = os.path.join(data_root, "oxford_pets", "split_fewshot", "shot_4-seed_1.pkl")
    image = os.path.join(data_root, "oxford_pets", "images", f"{CLASSNAMES[0]}_1.png")
    good = Datum(impath=image, label=0, classname=CLASSNAMES[0])
    save_pickle({"train": [good, Datum(impath=image, label=99, classname="x")], "val": [good]}, cache)
    line = fails(capsys, data_root, tmp_path / "out", opts=SHOTS)
    assert line == (f"Error: The few-shot cache {cache}: item 1 of 'train' ({image}, 'x') has label 99, outside "
                    f"0..5 (6 classes). Delete the cache; it is regenerated on the next run.")
    assert not (tmp_path / "out").exists()  # refused before the run started: nothing left behind


def test_label_outside_classes_in_imagenet_preprocessed_cache(tmp_path):
    from restore import get_cfg_default
    from restore.data import DatasetError, build_dataset, load_pickle
    from test_data_fakes import FAKES
    name, make, _ = FAKES["imagenet"]
    make(tmp_path)
    cfg = get_cfg_default()
    cfg.merge_from_list(["DATASET.NAME", name, "DATASET.ROOT", str(tmp_path)])
    first = build_dataset(cfg)
    pkl = str(tmp_path / "imagenet" / "preprocessed.pkl")
    data = load_pickle(pkl)
    item = data["test"][3]
    data["test"][3] = Datum(impath=item.impath, label=first.num_classes, classname=item.classname)
    save_pickle(data, pkl)
    with pytest.raises(DatasetError) as info:
        build_dataset(cfg)
    n = first.num_classes
    assert str(info.value) == (f"{pkl}: item 3 of 'test' ({item.impath}, {item.classname!r}) has label {n}, "
                               f"outside 0..{n - 1} ({n} classes). Delete it; it is rebuilt on the next run.")


@pytest.mark.parametrize("key,value,needs", [
    ("TRAINER.RESTORE.FS.VISION_IMAGES", -2, "0 (all images) or at least 2"),
    ("TRAINER.RESTORE.FS.TEXT_CLASSES", 1, "0 (all classes) or at least 2"),
    ("TRAINER.RESTORE.FS.PROMPT_FREE", "no-grad", "one of grad, recompute, no_grad. Did you mean no_grad?"),
    ("TRAINER.RESTORE.FS.NORM", "l2", "one of relative, rms, fro."),
    ("TRAINER.RESTORE.SURGERY.MODE", "sometimes", "one of fs_guided, fixed, off, release."),
    ("TRAINER.COOP.CLASS_TOKEN_POSITION", "End", "one of end, middle, front. Did you mean end?"),
    ("DATASET.SUBSAMPLE_CLASSES", "novel", "one of all, base, new."),
])
def test_bad_count_or_choice_stops_before_any_work(key, value, needs, data_root, tmp_path, capsys):
    out = tmp_path / "out"
    line = fails(capsys, data_root, out, opts=[*SHOTS, key, str(value)])
    shown = value if isinstance(value, int) else repr(value)
    assert line.startswith(f"Error: {key} is {shown}; it must be {needs}"), line
    assert not out.exists()  # stopped before the output folder, the log or the few-shot cache


@pytest.mark.parametrize("key,value,needs", [
    ("OPTIM.MAX_EPOCH", 0, "at least 1 (the number of training epochs)"),
    ("OPTIM.MAX_EPOCH", -3, "at least 1 (the number of training epochs)"),
    ("DATALOADER.TRAIN_X.BATCH_SIZE", 0, "at least 1 (the training batch size)"),
    ("DATALOADER.TEST.BATCH_SIZE", -1, "at least 1 (the evaluation batch size)"),
    ("TRAINER.COOP.N_CTX", 0, "at least 1 (the number of learnable context tokens)"),
    ("OPTIM.LR", 0.0, "greater than 0 (the learning rate)"),
    ("TRAIN.PRINT_FREQ", 0, "at least 1 (print every this many batches)"),
    ("DATALOADER.NUM_WORKERS", -1, "at least 0"),
])
def test_out_of_range_value_stops_before_any_work(key, value, needs, data_root, tmp_path, capsys):
    out = tmp_path / "out"
    line = fails(capsys, data_root, out, opts=[*SHOTS, key, value])
    assert line.startswith(f"Error: {key} is {value}; it must be {needs}")
    assert line.endswith(f"Set {key} to a valid value.")
    assert not out.exists()  # stopped before the output folder, the log or the few-shot cache
    assert not os.path.exists(os.path.join(data_root, "oxford_pets", "split_fewshot"))


def test_context_longer_than_text_context(data_root, tmp_path, capsys):
    # The tiny CLIP has OpenAI's 77-token context: 80 context tokens cannot fit.
    line = fails(capsys, data_root, tmp_path / "ctx", opts=[*SHOTS, "TRAINER.COOP.N_CTX", 80])
    assert line.startswith("Error: The prompt 'X X X")
    assert line.endswith("alone takes 83 of the text encoder's 77 context tokens, leaving none for the class "
                         "name: lower TRAINER.COOP.N_CTX / CTX_INIT.")
    assert not (tmp_path / "ctx").exists()  # refused before the run started: nothing left behind
    line = fails(capsys, data_root, tmp_path / "init", "MaPLe",
                 opts=[*SHOTS, "TRAINER.MAPLE.CTX_INIT", "_".join(["a"] * 80)])
    assert line.startswith("Error: CTX_INIT 'a a a") and line.endswith(
        "takes 82 tokens, more than the text encoder's 77: shorten CTX_INIT.")


def test_class_name_longer_than_text_context(data_root, tmp_path, capsys):
    long_name = " ".join(["very"] * 71 + ["long", "dog"])  # with "X X" and "." 76 tokens + SOS/EOT
    path = split_path(data_root)
    split = json.load(open(path))
    for part in split.values():
        for entry in part:
            if entry[1] == 5:
                entry[2] = long_name
    json.dump(split, open(path, "w"))
    line = fails(capsys, data_root, tmp_path / "out", opts=[*SHOTS, "TRAINER.COOP.N_CTX", 2])
    assert line.startswith(f"Error: Class name {long_name!r} is too long: its prompt 'X X very very")
    assert line.endswith("takes 78 tokens, more than the text encoder's 77. Use a shorter class name (the "
                         "split file's third column) or fewer context tokens (TRAINER.COOP.N_CTX / CTX_INIT).")
    assert not (tmp_path / "out").exists()  # refused before the run started: nothing left behind


@pytest.mark.parametrize("content,says", [
    ([1, 2], "does not hold 'train' and 'val'"),
    ({"train": 5, "val": []}, "'train' is a int, not a list of images"),
    ({"train": ["a.png"], "val": []}, "item 0 of 'train' is a str, not an image record (Datum)"),
])
def test_cache_of_wrong_content(content, says, data_root, tmp_path, capsys):
    cache = os.path.join(data_root, "oxford_pets", "split_fewshot", "shot_4-seed_1.pkl")
    save_pickle(content, cache)
    line = fails(capsys, data_root, tmp_path / "out", opts=SHOTS)
    assert cache in line and says in line and "AttributeError" not in line


@pytest.mark.parametrize("code", [errno.ENOSPC, errno.EROFS])
def test_disk_full_or_read_only_while_saving(code, data_root, tmp_path, capsys, monkeypatch):
    """The OSError of a failing checkpoint write (injected: CI runs as root, where file modes do not
    stop a write) is one line naming the file, in log.txt too; no temporary file stays behind."""
    def failing_save(obj, f, *args, **kwargs):
        f.write(b"partial")
        raise OSError(code, os.strerror(code))

    monkeypatch.setattr(ckpt.torch, "save", failing_save)
    out = tmp_path / "out"
    line = fails(capsys, data_root, out, opts=SHOTS)
    target = out / registered_name("CoOp") / "model.pth.tar-1"
    fix = {errno.ENOSPC: "Free disk space (or choose another --output-dir) and run again (it resumes "
                         "from the last saved epoch).",
           errno.EROFS: "The file system is read-only: choose a writable --output-dir."}[code]
    assert line == f"Error: Cannot write or read {target}: {os.strerror(code)} (errno {code}). {fix}"
    assert line[len("Error: "):] in log_text(out)
    assert not any(f.endswith(".tmp") for f in files_under(out))
    assert not (out / LOCK_NAME).exists()  # released on error


def test_read_only_output_folder_at_start(data_root, tmp_path, capsys, monkeypatch):
    out = tmp_path / "ro" / "out"
    real = os.makedirs

    def read_only(path, *args, **kwargs):
        if str(path).startswith(str(tmp_path / "ro")):
            raise OSError(errno.EROFS, os.strerror(errno.EROFS), str(path))
        return real(path, *args, **kwargs)

    monkeypatch.setattr(os, "makedirs", read_only)
    line = fails(capsys, data_root, out, opts=SHOTS)
    assert line.startswith(f"Error: Cannot lock the output folder {out} ([Errno 30] Read-only file system")


def test_unreadable_image_in_a_dataloader_worker(data_root, tmp_path, capsys):
    split = json.load(open(split_path(data_root)))
    bad = os.path.join(data_root, "oxford_pets", "images", split["test"][2][0])
    with open(bad, "wb") as f:
        f.write(b"not a png")
    out = tmp_path / "out"
    line = fails(capsys, data_root, out, "ZeroshotCLIP", opts=["DATALOADER.NUM_WORKERS", 1])
    assert line.startswith(f"Error: Cannot read image {bad} (UnidentifiedImageError: ")
    assert line.endswith("Replace the file with a good copy (re-extract the dataset archive).")
    assert "worker" not in line
    assert line[len("Error: "):] in log_text(out)


# ------------------------------------------------------------------------ 5. nothing lost or left
# Child processes import only the modules they use (restore/__init__ would import torch and CLIP: slow).
BARE = ("import sys, types; pkg = types.ModuleType('restore'); pkg.__path__ = ['restore']; "
        "sys.modules['restore'] = pkg; ")
HOLD = BARE + ("import time; from restore.lock import OutputLock; OutputLock(sys.argv[1]).acquire(); "
               "print('locked', flush=True); time.sleep(600)")


def write_lock(folder, **record):
    os.makedirs(folder, exist_ok=True)
    base = {"pid": 1, "host": socket.gethostname(), "started": "2026-01-01 00:00:00", "job": ""}
    base.update(record)
    with open(os.path.join(folder, LOCK_NAME), "w") as f:
        json.dump(base, f)


def test_second_run_stops_and_a_killed_runs_lock_is_taken_over(data_root, tmp_path, capsys):
    """A run holds the folder (another process); a second run into it stops at once and writes nothing.
    Once the holder is killed (SIGKILL: nothing released), the next run takes the lock over."""
    out = tmp_path / "out"
    holder = subprocess.Popen([sys.executable, "-c", HOLD, str(out)], cwd=ROOT, stdout=subprocess.PIPE,
                              text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        line = fails(capsys, data_root, out, opts=SHOTS)
        assert line.startswith(f"Error: Another run is writing into {out} (pid {holder.pid} on "
                               f"{socket.gethostname()}, started ")
        assert line.endswith(f"wait for it or use another --output-dir. If that run is dead, delete "
                             f"{out / LOCK_NAME}.")
        assert os.listdir(out) == [LOCK_NAME]  # no log, no checkpoint: stopped at once
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait()
    assert (out / LOCK_NAME).exists()  # the kill left it behind
    run(data_root, out, opts=SHOTS)
    assert f"Note: taking over the lock of {out} from a run that is gone (pid {holder.pid} on " in log_text(out)
    assert "Finish training" in log_text(out)
    assert not (out / LOCK_NAME).exists()  # released on normal exit
    # A live owner (this test's parent process) is never taken over; the same pid with another process
    # start time is a reused pid: the lock's run is gone.
    from restore.lock import process_start
    write_lock(out, pid=os.getppid(), process_start=process_start(os.getppid()))
    line = fails(capsys, data_root, out, opts=SHOTS)
    assert line.startswith(f"Error: Another run is writing into {out} (pid {os.getppid()} on ")
    write_lock(out, pid=os.getppid(), process_start="1")
    run(data_root, out, opts=SHOTS)
    assert not (out / LOCK_NAME).exists()


def test_requeued_cluster_job_takes_over_its_lock(tmp_path, monkeypatch):
    for var in ("SLURM_JOB_ID", "SLURM_ARRAY_JOB_ID", "SLURM_ARRAY_TASK_ID"):
        monkeypatch.delenv(var, raising=False)
    out = str(tmp_path / "out")
    write_lock(out, host="node-a", pid=4242, job="slurm:77_3")
    with pytest.raises(UserError, match=r"pid 4242 on node-a, job slurm:77_3"):
        OutputLock(out).acquire()  # another host, no job of ours: never guessed dead
    monkeypatch.setenv("SLURM_ARRAY_JOB_ID", "77")
    monkeypatch.setenv("SLURM_ARRAY_TASK_ID", "4")
    with pytest.raises(UserError):
        OutputLock(out).acquire()  # another task of the array
    monkeypatch.setenv("SLURM_ARRAY_TASK_ID", "3")
    lock = OutputLock(out)
    lock.acquire()  # the same task, requeued onto this node
    assert json.load(open(os.path.join(out, LOCK_NAME)))["pid"] == os.getpid()
    lock.release()
    assert not os.path.exists(os.path.join(out, LOCK_NAME))


def _rank_worker(rank, free, held, init_file, results):
    import torch.distributed as dist
    os.environ["RANK"] = str(rank)
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=2)
    for folder in (free, held):
        try:
            with output_lock(folder):
                results.put((folder, rank, "locked", os.path.exists(os.path.join(folder, LOCK_NAME))))
        except UserError as err:
            results.put((folder, rank, "refused", str(err)))
    dist.barrier()  # no rank hangs: both got here
    dist.destroy_process_group()


def test_ranks_share_rank0_lock_outcome(tmp_path):
    """torchrun-style (RANK, an initialised process group): rank 0 takes the lock and broadcasts the
    outcome, so that every rank goes on, or every rank stops with the same message."""
    import torch.multiprocessing as mp
    free, held = str(tmp_path / "free"), str(tmp_path / "held")
    write_lock(held, pid=os.getppid())
    ctx = mp.get_context("fork")
    results = ctx.Queue()
    procs = [ctx.Process(target=_rank_worker, args=(r, free, held, str(tmp_path / "init"), results))
             for r in range(2)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(timeout=120)
        assert p.exitcode == 0
    got = sorted(results.get(timeout=5) for _ in range(4))
    assert got[0] == (free, 0, "locked", True) and got[1][:3] == (free, 1, "locked")  # rank 0 holds it
    assert not os.path.exists(os.path.join(free, LOCK_NAME))  # and is released after the block
    assert [g[1:3] for g in got[2:]] == [(0, "refused"), (1, "refused")]
    assert got[2][3] == got[3][3] and got[2][3].startswith(f"Another run is writing into {held} (pid {os.getppid()}")


def test_partial_checkpoint_writes_removed_at_next_start(data_root, tmp_path):
    out = tmp_path / "out"
    save_dir = out / registered_name("CoOp")
    os.makedirs(save_dir)
    left = [save_dir / ".model.pth.tar-1.k3j2h1.tmp", save_dir / ".checkpoint.a8d7f6.tmp"]
    for path in left:
        path.write_bytes(b"half a checkpoint")
    run(data_root, out, opts=SHOTS)
    assert f"Removed 2 temporary file(s) left by an interrupted run: {left[1]}, {left[0]}" in log_text(out)
    assert sorted(os.listdir(save_dir)) == ["checkpoint", "model.pth.tar-1"]


def test_killed_testbed_generation_removed_at_next_start(tmp_path):
    from restore.testbed import generate
    root = tmp_path / "root"
    code = BARE + "from restore.testbed.generate import main; main(sys.argv[1:])"
    proc = subprocess.Popen([sys.executable, "-c", code, "--root", str(root), "--datasets", "patterns"],
                            cwd=ROOT, stdout=subprocess.DEVNULL)
    deadline = time.time() + 120
    while time.time() < deadline and not list(root.glob(".testbed_patterns.tmp-*/images/train/*")):
        time.sleep(0.2)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    left = list(root.glob(".testbed_patterns.tmp-*"))
    assert len(left) == 1 and f"-{proc.pid}-" in left[0].name
    host = socket.gethostname()
    live = root / f".testbed_patterns.tmp-{host}-{os.getpid()}-abc123"
    live.mkdir()  # a generation still running in a live process is left alone
    old = root / "testbed_patterns" / f".images.old-{host}-{proc.pid}"  # a killed --force replacement
    old.mkdir(parents=True)
    assert generate.remove_abandoned(root, generate.D.get("patterns")) == left + [old]
    assert sorted(p.name for p in root.iterdir()) == [live.name, "testbed_patterns"]
    assert os.listdir(root / "testbed_patterns") == []


def final_state(folder, epoch):
    return torch.load(os.path.join(folder, registered_name("CoOp"), f"model.pth.tar-{epoch}"),
                      weights_only=True)["state_dict"]


def test_truncated_newest_checkpoint_resumes_from_newest_readable(data_root, tmp_path, monkeypatch):
    opts = [*SHOTS, "OPTIM.MAX_EPOCH", 3, "TRAIN.CHECKPOINT_FREQ", 1, "OPTIM.WARMUP_EPOCH", 0]
    whole = run(data_root, tmp_path / "whole", opts=opts)

    original = Trainer.run_epoch

    def stop_after_two(self):
        if self.epoch == 2:
            raise KeyboardInterrupt
        return original(self)

    monkeypatch.setattr(Trainer, "run_epoch", stop_after_two)
    with pytest.raises(KeyboardInterrupt):
        run(data_root, tmp_path / "parts", opts=opts)
    monkeypatch.setattr(Trainer, "run_epoch", original)
    save_dir = tmp_path / "parts" / registered_name("CoOp")
    first = (save_dir / "model.pth.tar-1").read_bytes()
    newest = save_dir / "model.pth.tar-2"
    newest.write_bytes(newest.read_bytes()[:1000])  # cut short (a full disk, an interrupted copy)

    resumed = run(data_root, tmp_path / "parts", opts=opts)
    log = open(next(p for p in (tmp_path / "parts").iterdir() if p.name.startswith("log.txt-"))).read()
    assert f"Warning: cannot read {newest} (" in log
    assert (f"Note: resuming from {save_dir / 'model.pth.tar-1'}, the newest readable checkpoint; skipped the "
            f"damaged {newest}") in log
    assert "resuming at epoch 2" in log and "epoch [1/3]" not in log and "epoch [2/3]" in log
    assert (save_dir / "model.pth.tar-1").read_bytes() == first  # the intact epoch was not retrained
    assert resumed == whole
    a, b = final_state(tmp_path / "whole", 3), final_state(tmp_path / "parts", 3)
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


@pytest.mark.parametrize("opts,expected", [
    (["--trainer", "RESTORE_M"], "Unknown trainer 'RESTORE_M' (--trainer). Did you mean RESTORE_m?"),
    (["--trainer", "restore_p"], "Unknown trainer 'restore_p' (--trainer). Did you mean RESTORE_p?"),
    (["--trainer", "CoOp", "--config-file", "configs/trainers/CoOp/Testbed.yaml"],
     "--config-file configs/trainers/CoOp/Testbed.yaml: file not found. Did you mean "
     "configs/trainers/CoOp/testbed.yaml?"),
    (["--trainer", "CoOp", "OPTIM.max_epoch", "3"],
     "Unknown config key 'OPTIM.max_epoch' (on the command line). Did you mean OPTIM.MAX_EPOCH?"),
    (["--trainer", "CoOp", "DATASET.NAME", "oxfordpets", "MODEL.BACKBONE.NAME", "tiny-random"],
     "Unknown dataset 'oxfordpets' (DATASET.NAME). Did you mean OxfordPets?"),
    (["--trainer", "CoOp", "--dataset-config-file", DATASET_CFG, "MODEL.BACKBONE.NAME", "vit-b/16",
      "DATALOADER.NUM_WORKERS", "0"],
     "Unknown CLIP backbone 'vit-b/16'. Did you mean ViT-B/16?"),
])
def test_case_only_typo_suggests_the_right_name(opts, expected, data_root, tmp_path, capsys):
    capsys.readouterr()
    with pytest.raises(SystemExit) as info:
        train.main(["--engine", "native", "--root", data_root, "--output-dir", str(tmp_path / "o"), *opts])
    assert info.value.code == 1
    assert capsys.readouterr().err.startswith(f"Error: {expected}")
