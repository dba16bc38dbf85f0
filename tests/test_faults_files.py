"""Every file through one error path (issue 23, section 3): a write that fails is one line naming the file and
leaves nothing half-written that is trusted later; a file the user points at never runs code and, when it
cannot be read, is one line naming it; the project's tools check the records they read.

Write failures are injected (CI runs as root, where file modes stop no write): the file object a write goes
through raises the OSError a full disk raises (ENOSPC, no file name), after `allowed` bytes.
"""
import builtins
import errno
import json
import os

import pytest
import torch

import parse_test_res
import train
from restore import files
from restore.engine import registered_name
from restore.engine import checkpoint as ckpt
from restore.legacy import main as legacy_main
from test_engine_fakes import cli_opts, make_oxford_pets

DATASET_CFG = "configs/datasets/oxford_pets.yaml"
FULL = f"No space left on device (errno {errno.ENOSPC}). Free disk space"


@pytest.fixture(scope="module")
def data_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("data")
    make_oxford_pets(str(root))
    return str(root)


def run(data_root, out, *extra, trainer="CoOp", opts=()):
    return train.main(["--root", data_root, "--seed", "1", "--trainer", trainer, "--engine", "native",
                       "--dataset-config-file", DATASET_CFG, "--output-dir", str(out), *extra,
                       *cli_opts(trainer, "DATASET.NUM_SHOTS", 4, *opts)])


def error_line(capsys, *args, **kwargs):
    capsys.readouterr()
    with pytest.raises(SystemExit) as info:
        run(*args, **kwargs)
    assert info.value.code == 1
    err = capsys.readouterr().err
    errors = [line for line in err.splitlines() if line.startswith("Error: ")]
    assert "Traceback" not in err and len(errors) == 1, err
    return errors[0]


class DiskFull:
    """A file object whose writes fail with ENOSPC (and no file name, as the kernel's) after `allowed` bytes."""

    def __init__(self, f, allowed=0):
        self.f, self.allowed = f, allowed

    def write(self, data):
        if len(data) > self.allowed:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        self.allowed -= len(data)
        return self.f.write(data)

    def __getattr__(self, name):
        return getattr(self.f, name)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.f.close()


def fill_disk_for(monkeypatch, module, suffix, allowed=0):
    """Make the files that `module` opens (through os.fdopen or open) and whose name ends with `suffix` fail."""
    real_fdopen, real_open = os.fdopen, builtins.open

    def fdopen(fd, *args, **kwargs):
        f = real_fdopen(fd, *args, **kwargs)
        name = os.readlink(f"/proc/self/fd/{fd}") if os.path.exists(f"/proc/self/fd/{fd}") else ""
        return DiskFull(f, allowed) if suffix in os.path.basename(name) else f

    def open_(path, *args, **kwargs):
        f = real_open(path, *args, **kwargs)
        return DiskFull(f, allowed) if str(path).endswith(suffix) else f

    monkeypatch.setattr(module.os, "fdopen", fdopen)
    monkeypatch.setattr(module, "open", open_, raising=False)


# ------------------------------------------------------------------------------------------ writes
def test_a_full_disk_while_saving_a_checkpoint(data_root, tmp_path, capsys, monkeypatch):
    """torch.save into a file reported a full disk as "RuntimeError: [enforce fail at inline_container.cc]
    unexpected pos"; the checkpoint is serialised in memory and written by Python: ENOSPC, naming it."""
    fill_disk_for(monkeypatch, files, ".model.pth.tar-1.")
    out = tmp_path / "out"
    line = error_line(capsys, data_root, out)
    target = out / registered_name("CoOp") / "model.pth.tar-1"
    assert line.startswith(f"Error: Cannot write or read {target}: {FULL}"), line
    assert line[len("Error: "):] in open(out / "log.txt").read()
    assert not os.path.exists(target) and not [f for f in os.listdir(target.parent) if f.endswith(".tmp")]


@pytest.mark.parametrize("allowed", [0, 4096])
def test_a_full_disk_under_log_txt(allowed, data_root, tmp_path, capsys, monkeypatch):
    """log.txt fails at its first write, or after 4096 bytes: one line naming it (on the console)."""
    import restore.engine.logger as logger
    fill_disk_for(monkeypatch, logger, "log.txt", allowed)
    out = tmp_path / "out"
    line = error_line(capsys, data_root, out)
    assert line.startswith(f"Error: Cannot write or read {out / 'log.txt'}: {FULL}"), line
    assert not os.path.exists(out / "run_info.json") or allowed  # stopped at the first lines


def test_a_full_disk_under_run_info_json(data_root, tmp_path, capsys, monkeypatch):
    fill_disk_for(monkeypatch, files, ".run_info.json.")
    out = tmp_path / "out"
    line = error_line(capsys, data_root, out)
    assert line.startswith(f"Error: Cannot write or read {out / 'run_info.json'}: {FULL}"), line
    assert not os.path.exists(out / "run_info.json")


def test_a_full_disk_under_tensorboard(data_root, tmp_path, capsys, monkeypatch):
    """The event writer's thread fails at its first record (the event file is not even created): one line
    naming the TensorBoard folder, and no raw traceback of the writer's thread."""
    from tensorboard.summary.writer import record_writer
    real = record_writer.RecordWriter.write

    def write(self, data):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(record_writer.RecordWriter, "write", write)
    out = tmp_path / "out"
    line = error_line(capsys, data_root, out, opts=["OPTIM.MAX_EPOCH", 2])
    assert line.startswith(f"Error: Cannot write or read {out / 'tensorboard'}: {FULL}"), line
    monkeypatch.setattr(record_writer.RecordWriter, "write", real)


def test_a_full_disk_while_generating_the_testbed(tmp_path, capsys, monkeypatch):
    """A testbed dataset is generated on first use: a full disk names the image, and the half-made dataset is
    removed (the next run generates it anew)."""
    from PIL import Image
    real = Image.Image.save
    count = {"n": 0}

    def save(self, fp, *args, **kwargs):
        count["n"] += 1
        if count["n"] > 5:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real(self, fp, *args, **kwargs)

    monkeypatch.setattr(Image.Image, "save", save)
    capsys.readouterr()
    with pytest.raises(SystemExit) as info:
        train.main(["--root", str(tmp_path / "data"), "--seed", "1", "--trainer", "CoOp", "--engine", "native",
                    "--dataset-config-file", "configs/datasets/shapes.yaml",
                    "--config-file", "configs/trainers/CoOp/testbed.yaml", "--output-dir", str(tmp_path / "out")])
    assert info.value.code == 1
    line = [x for x in capsys.readouterr().err.splitlines() if x.startswith("Error: ")][0]
    assert "cannot generate the testbed dataset under" in line and ".png: No space left on device" in line
    assert os.listdir(tmp_path / "data") == []  # nothing half-made is left to be taken for a dataset
    from restore.testbed.generate import main as generate
    count["n"] = 0
    with pytest.raises(SystemExit, match=r"^Error: Cannot write or read .*\.png: No space left"):
        generate(["--root", str(tmp_path / "data"), "--datasets", "shapes"])


def test_atomic_write_names_the_file_and_keeps_the_old_one(tmp_path, monkeypatch):
    path = tmp_path / "x.json"
    files.atomic_write(path, lambda f: f.write("old"), text=True)
    fill_disk_for(monkeypatch, files, ".x.json.")
    with pytest.raises(OSError) as info:
        files.atomic_write(path, lambda f: f.write("new"), text=True)
    assert info.value.filename == str(path) and info.value.errno == errno.ENOSPC
    assert path.read_text() == "old" and os.listdir(tmp_path) == ["x.json"]


# ------------------------------------------------------------------------------- files pointed at
PYTHON_TAG = "!!python/object/apply:os.system [\"touch {marker}\"]"


@pytest.mark.parametrize("flag", ["--config-file", "--dataset-config-file"])
def test_a_yaml_file_with_a_python_tag_is_one_line(flag, data_root, tmp_path, capsys):
    marker = tmp_path / "ran"
    bad = tmp_path / "bad.yaml"
    bad.write_text(f"OPTIM:\n  NAME: {PYTHON_TAG.format(marker=marker)}\n")
    extra = [flag, str(bad)]
    if flag == "--dataset-config-file":  # replaces the dataset's file (the run gives it once)
        capsys.readouterr()
        with pytest.raises(SystemExit) as info:
            train.main(["--root", data_root, "--trainer", "CoOp", "--engine", "native", flag, str(bad),
                        "--output-dir", str(tmp_path / "out")])
        assert info.value.code == 1
        line = [x for x in capsys.readouterr().err.splitlines() if x.startswith("Error: ")][0]
    else:
        line = error_line(capsys, data_root, tmp_path / "out", *extra)
    assert f"Config file {bad} (line 2, column 9) holds a Python object tag" in line and "not read" in line
    assert not marker.exists() and not (tmp_path / "out").exists()


def test_a_crafted_or_random_openai_backbone_file_is_one_line(tmp_path):
    import restore
    from restore.backbone import BackboneError
    from restore.safe_pickle import UntrustedFileError

    class Runs:
        def __reduce__(self):
            return os.system, (f"touch {tmp_path / 'ran'}",)

    torch.save({"text_projection": torch.zeros(2), "x": Runs()}, tmp_path / "crafted.pt")
    noise = torch.randint(0, 256, (2048,), generator=torch.Generator().manual_seed(0))
    (tmp_path / "random.pt").write_bytes(bytes(noise.tolist()))
    with pytest.raises(UntrustedFileError, match="--trust-files") as info:
        restore.load_clip(str(tmp_path / "crafted.pt"))
    assert "weights_only" not in str(info.value) and not (tmp_path / "ran").exists()
    with pytest.raises(BackboneError, match=r"^Cannot read CLIP weights from .*random\.pt \(UnpicklingError") as info:
        restore.load_clip(str(tmp_path / "random.pt"))
    assert "\n" not in str(info.value) and "weights_only" not in str(info.value)


# ------------------------------------------------------------------------------ tools and records
@pytest.fixture(scope="module")
def coop_run(data_root, tmp_path_factory):
    out = tmp_path_factory.mktemp("coop") / "run"
    run(data_root, out)
    return out


def test_legacy_checks_the_record_and_offers_trust_files(coop_run, tmp_path):
    with pytest.raises(SystemExit) as info:  # a CoOp run exported as CoCoOp or VPT (same folder name)
        legacy_main(["--trainer", "VPT", "--model-dir", str(coop_run), "--output-dir", str(tmp_path / "x")])
    assert str(info.value) == (f"Error: {coop_run / 'prompt_learner' / 'model.pth.tar-1'} was trained with CoOp, "
                               "not VPT: pass --trainer CoOp.")
    crafted = tmp_path / "crafted"
    os.makedirs(crafted / "prompt_learner")

    class Runs:
        def __reduce__(self):
            return os.system, (f"touch {tmp_path / 'ran'}",)

    torch.save({"state_dict": {}, "epoch": 1, "x": Runs()}, crafted / "prompt_learner" / "model.pth.tar-1")
    with pytest.raises(SystemExit) as info:
        legacy_main(["--trainer", "CoOp", "--model-dir", str(crafted), "--load-epoch", "1",
                     "--output-dir", str(tmp_path / "y")])
    assert "pass --trust-files" in str(info.value) and not (tmp_path / "ran").exists()
    assert "--trust-files" in legacy_help()
    legacy_main(["--trainer", "CoOp", "--model-dir", str(coop_run), "--output-dir", str(tmp_path / "z")])
    assert set(torch.load(tmp_path / "z" / "prompt_learner" / "model.pth.tar-1")["state_dict"]) == {"ctx"}


def legacy_help():
    import contextlib
    import io
    text = io.StringIO()
    with contextlib.redirect_stdout(text), pytest.raises(SystemExit):
        legacy_main(["--help"])
    return text.getvalue()


@pytest.mark.parametrize("content", ["{not json", "[1, 2]", json.dumps({"config": "x"})])
def test_a_damaged_run_info_json_is_one_line(content, coop_run, data_root, tmp_path, capsys):
    import shutil
    out = tmp_path / "copy"
    shutil.copytree(coop_run, out)
    (out / "run_info.json").write_text(content)
    line = error_line(capsys, data_root, out)  # train.py: the output folder's record
    assert line.startswith(f"Error: {out / 'run_info.json'} is not a readable run record ("), line
    parent = tmp_path / "seeds"
    os.makedirs(parent)
    shutil.copytree(coop_run, parent / "seed1")
    shutil.copytree(out, parent / "seed2")
    with pytest.raises(SystemExit) as info:  # parse_test_res.py: the seeds' records
        parse_test_res.main([str(parent)])
    assert str(info.value).startswith(f"Error: {parent / 'seed2' / 'run_info.json'} is not a readable run record")


def test_a_converted_original_checkpoint_reports_its_own_cause(coop_run, data_root, tmp_path, capsys):
    """An original CoOp checkpoint (key `ctx`) with another context length: read as ours it would lack
    `prompt_learner.ctx`; the error is the converted state's (the shape), the real cause."""
    import shutil
    out = tmp_path / "original"
    shutil.copytree(coop_run, out)
    path = out / "prompt_learner" / "model.pth.tar-1"
    ctx = torch.load(path, weights_only=True)["state_dict"]["prompt_learner.ctx"]
    torch.save({"state_dict": {"ctx": torch.zeros(ctx.shape[0] + 2, ctx.shape[1])}, "epoch": 1}, path)
    os.remove(out / "run_info.json")
    line = error_line(capsys, data_root, tmp_path / "eval", "--eval-only", "--model-dir", str(out),
                      "--load-epoch", "1")
    assert f"prompt_learner.ctx has shape ({ctx.shape[0] + 2}, {ctx.shape[1]}) but the model expects " \
           f"({ctx.shape[0]}, {ctx.shape[1]})" in line, line
    assert "missing keys" not in line and str(path) in line
