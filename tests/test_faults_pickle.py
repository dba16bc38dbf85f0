"""No code runs from a file the user points at (issue 10, section 2).

A crafted pickle whose loading would call os.mkdir(marker) goes through every path that reads a
pickled or program file: eval (--model-dir/--load-epoch), resume from OUTPUT_DIR, MODEL.INIT_WEIGHTS,
the Python API, the few-shot cache, ImageNet's preprocessed.pkl; plus a TorchScript backbone that is
not OpenAI's and a `.py` config. Each stops with one line naming the file and the opt-in, and creates
nothing; a positive control in the same test shows the payload does run when read without restriction.
Original-format checkpoints (the fixture's globals) still load; --trust-files loads the crafted ones.
"""
import json
import os
import pickle
import random
import re
import subprocess
import sys

import clip
import pytest
import torch
from yacs.config import CfgNode

import restore
import train
from restore import safe_pickle
from restore.data import Datum, load_pickle
from restore.engine import registered_name, load_checkpoint
from restore.engine.checkpoint import CheckpointFileError
from restore.safe_pickle import UntrustedFileError
from test_backbone import plain_known  # noqa: F401  (fixture: the small CLIP passes as OpenAI-shaped)
from test_engine_fakes import ROOT, cli_opts, make_cfg, make_oxford_pets

FIXTURE = os.path.join(os.path.dirname(__file__), "fixtures", "original_checkpoint_globals.json")
MKDIR = f"{os.mkdir.__module__}.mkdir"  # how pickle records os.mkdir
OPT_IN = "--trust-files (config: TRUST_FILES True; Python: trust=True)"
TRAINER = "CoOp"


class Payload:
    """Unpickling it calls os.mkdir(marker): harmless, and visible on disk."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return os.mkdir, (self.marker,)


@pytest.fixture(scope="module")
def data_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("data")
    make_oxford_pets(str(root))
    return str(root)


def cli(data_root, out, *argv, opts=()):
    """train.py in-process (native engine, fake OxfordPets, tiny CLIP): (exit code, stderr)."""
    args = ["--root", data_root, "--seed", "1", "--trainer", TRAINER, "--engine", "native",
            "--dataset-config-file", "configs/datasets/oxford_pets.yaml", "--output-dir", str(out),
            *argv, *cli_opts(TRAINER, "DATASET.SUBSAMPLE_CLASSES", "base", *opts)]
    try:
        train.main(args)
        return 0, ""
    except SystemExit as exit_:
        return exit_.code, None


def stopped(capsys, code, *named):
    """The run exited 1 with one 'Error:' line naming every string in `named`, and no traceback."""
    err = capsys.readouterr().err
    assert code == 1, err
    line = err.splitlines()[0]
    assert line.startswith("Error: ") and "Traceback" not in err, err
    for text in named:
        assert text in line, (text, line)
    return line


def model_state(tmp_path):
    """The learned state of a real CoOp model of the tiny config (what a crafted file would carry)."""
    cfg = make_cfg(TRAINER, tmp_path, tmp_path, "DATASET.SUBSAMPLE_CLASSES", "base")
    return restore.build_model(cfg, ["a", "b", "c"], restore.tiny_clip()).state_to_save()


def crafted_checkpoint(path, marker, state_dict, epoch=1):
    """A checkpoint in the project's layout whose scheduler entry is the payload."""
    os.makedirs(os.path.dirname(path), exist_ok=True)
    torch.save({"state_dict": state_dict, "epoch": epoch, "optimizer": None,
                "scheduler": Payload(marker), "val_result": None}, path)
    return str(path)


def control_torch(path, marker):
    """Positive control: unrestricted torch.load of the same file runs the payload."""
    assert not marker.exists()
    torch.load(path, weights_only=False)
    assert marker.is_dir()


def control_pickle(path, marker):
    """Positive control: plain pickle.load of the same bytes runs the payload."""
    assert not marker.exists()
    with open(path, "rb") as f:
        pickle.load(f)
    assert marker.is_dir()


# ------------------------------------------------------------------------------------- checkpoints
def test_eval_model_dir_refuses_crafted_checkpoint(data_root, tmp_path, capsys):
    marker = tmp_path / "marker"
    path = crafted_checkpoint(tmp_path / "model" / registered_name(TRAINER) / "model.pth.tar-1", marker,
                              model_state(tmp_path))
    code, _ = cli(data_root, tmp_path / "out", "--eval-only", "--model-dir", str(tmp_path / "model"),
                  "--load-epoch", "1")
    stopped(capsys, code, path, MKDIR, OPT_IN)
    assert not marker.exists()
    control_torch(path, marker)


def test_trust_files_loads_crafted_checkpoint(data_root, tmp_path, capsys):
    """--trust-files is the opt-in: the same file loads (and its payload runs)."""
    marker = tmp_path / "marker"
    crafted_checkpoint(tmp_path / "model" / registered_name(TRAINER) / "model.pth.tar-1", marker,
                       model_state(tmp_path))
    code, _ = cli(data_root, tmp_path / "out", "--eval-only", "--model-dir", str(tmp_path / "model"),
                  "--load-epoch", "1", "--trust-files")
    assert code == 0, capsys.readouterr().err
    assert marker.is_dir()
    assert re.search(r"^\* accuracy: [\d.]+%$", capsys.readouterr().out, re.M)


def test_resume_refuses_crafted_checkpoint(data_root, tmp_path, capsys):
    """The crafted newest checkpoint stops the resume: it is not taken for a damaged file and skipped
    for the intact older epoch."""
    marker, out = tmp_path / "marker", tmp_path / "out"
    folder = out / registered_name(TRAINER)
    state = model_state(tmp_path)
    folder.mkdir(parents=True)
    torch.save({"state_dict": state, "epoch": 1}, folder / "model.pth.tar-1")
    path = crafted_checkpoint(folder / "model.pth.tar-2", marker, state, epoch=2)
    (folder / "checkpoint").write_text("model.pth.tar-2\n")
    code, _ = cli(data_root, out, opts=("OPTIM.MAX_EPOCH", 3))
    stopped(capsys, code, path, MKDIR, OPT_IN)
    assert not marker.exists()
    assert sorted(os.listdir(folder)) == ["checkpoint", "model.pth.tar-1", "model.pth.tar-2"]  # none written
    control_torch(path, marker)


def test_init_weights_refuses_crafted_checkpoint(data_root, tmp_path, capsys):
    marker = tmp_path / "marker"
    path = crafted_checkpoint(tmp_path / "init.pth", marker, model_state(tmp_path))
    code, _ = cli(data_root, tmp_path / "out", opts=("MODEL.INIT_WEIGHTS", path))
    stopped(capsys, code, path, MKDIR, OPT_IN)
    assert not marker.exists()
    assert not (tmp_path / "out" / registered_name(TRAINER)).exists()
    control_torch(path, marker)


def test_python_api_refuses_crafted_checkpoint(tmp_path):
    marker = tmp_path / "marker"
    path = crafted_checkpoint(tmp_path / "model.pth.tar-1", marker, {"ctx": torch.ones(2)})
    with pytest.raises(UntrustedFileError) as info:
        load_checkpoint(path)
    message = str(info.value)
    assert "\n" not in message and path in message and MKDIR in message and OPT_IN in message
    assert not marker.exists()
    control_torch(path, marker)
    os.rmdir(marker)
    loaded = load_checkpoint(path, trust=True)  # the Python opt-in
    assert marker.is_dir() and torch.equal(loaded["state_dict"]["ctx"], torch.ones(2))


def test_random_bytes_checkpoint_is_one_line(data_root, tmp_path):
    """A file of random bytes: one error line naming it; no note, no retry message, no traceback
    (the real command line, in a subprocess)."""
    path = tmp_path / "model" / registered_name(TRAINER) / "model.pth.tar-1"
    path.parent.mkdir(parents=True)
    path.write_bytes(random.Random(0).randbytes(4096))
    args = ["--root", data_root, "--trainer", TRAINER, "--engine", "native", "--dataset-config-file",
            "configs/datasets/oxford_pets.yaml", "--output-dir", str(tmp_path / "out"), "--eval-only",
            "--model-dir", str(tmp_path / "model"), "--load-epoch", "1",
            *cli_opts(TRAINER, "DATASET.SUBSAMPLE_CLASSES", "base")]
    env = dict(os.environ, OMP_NUM_THREADS="1")
    env.pop("RESTORE_TRACEBACK", None)
    done = subprocess.run([sys.executable, "train.py", *args], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 1
    errors = [line for line in done.stderr.splitlines() if line.startswith("Error")]
    assert len(errors) == 1 and errors[0].startswith(f"Error: Cannot read checkpoint {path} (")
    assert errors[0].endswith("): the file is damaged, incomplete or no PyTorch checkpoint.")
    assert "Traceback" not in done.stderr
    assert "original Dassl" not in done.stdout and "weights_only" not in done.stdout  # the old note


@pytest.mark.filterwarnings("ignore")  # torch deprecates TorchScript
def test_torchscript_as_checkpoint_is_refused(tmp_path):
    """torch.load hands a TorchScript archive to torch.jit.load (a program): refused unless trusted."""
    path = str(tmp_path / "model.pth.tar-1")
    torch.jit.save(torch.jit.script(torch.nn.Linear(2, 2)), path)
    with pytest.raises(UntrustedFileError, match=re.escape(f"{path} is a TorchScript archive")):
        load_checkpoint(path)


# -------------------------------------------------------------------------- original checkpoints
def fixture_globals(trainer=None):
    """The globals of one original trainer's checkpoints, or (None) of all of them."""
    with open(FIXTURE) as f:
        data = json.load(f)
    return {name for t, names in data.items() if not t.startswith("_") and trainer in (None, t) for name in names}


class ConstantWarmupScheduler(torch.optim.lr_scheduler.LRScheduler):
    """Dassl's ConstantWarmupScheduler (dassl/optim/lr_scheduler.py), restated: its state_dict() is
    what Dassl's save_model stores, the successor scheduler object included."""

    def __init__(self, optimizer, successor, warmup_epoch, cons_lr):
        self.successor, self.warmup_epoch, self.cons_lr = successor, warmup_epoch, cons_lr
        super().__init__(optimizer)

    def get_lr(self):
        if self.last_epoch >= self.warmup_epoch:
            return self.successor.get_last_lr()
        return [self.cons_lr for _ in self.base_lrs]

    def step(self, epoch=None):
        if self.last_epoch >= self.warmup_epoch:
            self.successor.step(epoch)
            self._last_lr = self.successor.get_last_lr()
        else:
            super().step(epoch)


def original_checkpoint(path, learner, adam=False):
    """What Dassl's save_model writes after two epochs of SGD (CoOp's configs; `adam`: TCP's Adam) + constant
    warm-up + cosine: state_dict, epoch, optimizer.state_dict(), scheduler.state_dict(), val_result."""
    optim = torch.optim.Adam(learner.parameters(), lr=0.002, eps=1e-3) if adam else \
        torch.optim.SGD(learner.parameters(), lr=0.002, momentum=0.9)
    sched = ConstantWarmupScheduler(optim, torch.optim.lr_scheduler.CosineAnnealingLR(optim, 5.0), 1, 1e-5)
    for _ in range(2):
        learner.ctx.grad = torch.ones_like(learner.ctx)
        optim.step()
        sched.step()
    torch.save({"state_dict": learner.state_dict(), "epoch": 2, "optimizer": optim.state_dict(),
                "scheduler": sched.state_dict(), "val_result": None}, path)
    return str(path)


def test_allow_list_is_the_fixture():
    assert set(safe_pickle.ORIGINAL_CHECKPOINT_GLOBALS) == fixture_globals()
    # What torch.save writes for tensors is in torch's own weights_only list.
    state = {"p": torch.nn.Parameter(torch.ones(2)), "t": torch.zeros(3)}
    assert torch.load(_saved(state), weights_only=True)["t"].shape == (3,)


def _saved(obj):
    import io
    buffer = io.BytesIO()
    torch.save(obj, buffer)
    buffer.seek(0)
    return buffer


@pytest.mark.parametrize("trainer", ["CoOp", "TCP"])
def test_original_format_checkpoint_loads(tmp_path, capsys, trainer):
    learner = torch.nn.Module()
    learner.ctx = torch.nn.Parameter(torch.arange(6.0).reshape(2, 3))
    path = original_checkpoint(tmp_path / "model.pth.tar-2", learner, adam=trainer == "TCP")
    if hasattr(torch.serialization, "get_unsafe_globals_in_checkpoint"):  # torch >= 2.5
        assert set(torch.serialization.get_unsafe_globals_in_checkpoint(path)) == fixture_globals(trainer)
    with pytest.raises(pickle.UnpicklingError):  # what torch refuses on its own
        torch.load(path, weights_only=True)
    loaded = load_checkpoint(path)
    assert torch.equal(loaded["state_dict"]["ctx"], learner.ctx.detach())
    assert loaded["epoch"] == 2 and loaded["scheduler"]["successor"].T_max == 5.0
    assert capsys.readouterr().out == ""  # no note


def test_other_globals_are_refused(tmp_path):
    """A torch class outside the fixture (here RMSprop) is refused like any other code."""
    optim = torch.optim.RMSprop([torch.nn.Parameter(torch.ones(1))])
    path = str(tmp_path / "model.pth.tar-1")
    torch.save({"state_dict": {}, "scheduler": {"successor": optim}}, path)
    with pytest.raises(UntrustedFileError, match=re.escape("it refers to torch.optim.rmsprop.RMSprop")):
        load_checkpoint(path)


# ---------------------------------------------------------------------------------------- caches
def test_fewshot_cache_refuses_crafted_pickle(tmp_path, capsys):
    root = tmp_path / "data"
    make_oxford_pets(str(root))
    marker = tmp_path / "marker"
    cache = root / "oxford_pets" / "split_fewshot" / "shot_2-seed_1.pkl"
    cache.parent.mkdir()
    with open(cache, "wb") as f:
        pickle.dump({"train": [Payload(marker)], "val": []}, f)
    code, _ = cli(str(root), tmp_path / "out", opts=("DATASET.NUM_SHOTS", 2))
    line = stopped(capsys, code, str(cache), MKDIR, OPT_IN)
    assert "Delete it; it is regenerated" in line
    assert not marker.exists()
    control_pickle(cache, marker)


def test_preprocessed_pkl_refuses_crafted_pickle(tmp_path):
    from restore.data.imagenet import ImageNet

    (tmp_path / "imagenet").mkdir()
    marker, path = tmp_path / "marker", tmp_path / "imagenet" / "preprocessed.pkl"
    with open(path, "wb") as f:
        pickle.dump({"train": [Payload(marker)], "test": []}, f)
    cfg = restore.get_cfg_default()
    cfg.DATASET.ROOT = str(tmp_path)
    with pytest.raises(UntrustedFileError) as info:
        ImageNet(cfg)
    assert str(path) in str(info.value) and MKDIR in str(info.value) and OPT_IN in str(info.value)
    assert not marker.exists()
    control_pickle(path, marker)


def test_original_fewshot_cache_loads():
    """A cache written by the original CoOp code with Dassl (Caltech101, 4 shots, seed 1) loads without
    Dassl, as our Datums."""
    path = os.path.join(os.path.dirname(FIXTURE), "original_fewshot_shot_4-seed_1.pkl")
    data = load_pickle(path)
    assert {k: len(v) for k, v in data.items()} == {"train": 40, "val": 20}
    first = data["train"][0]
    assert type(first) is Datum and (first.label, first.domain, first.classname) == (0, 0, "airplane")
    assert first.impath.endswith("/101_ObjectCategories/airplane/image_0002.png")


def test_cache_builds_datums_only(tmp_path):
    """A CoOp cache (Dassl Datums, written here by save_pickle under Dassl's class path) loads as our
    Datums; the trust opt-in reads any pickle."""
    from restore.data import save_pickle

    path = str(tmp_path / "shot_1-seed_1.pkl")
    save_pickle({"train": [Datum("/x/a.png", 3, 0, "cat")], "val": []}, path)
    with open(path, "rb") as f:
        assert b"dassl.data.datasets.base_dataset" in f.read()
    data = load_pickle(path)
    assert type(data["train"][0]) is Datum and data["train"][0].label == 3
    marker = tmp_path / "marker"
    with open(path, "wb") as f:
        pickle.dump([Payload(marker)], f)
    load_pickle(path, trust=True)
    assert marker.is_dir()


# -------------------------------------------------------------------------------- backbone files
def scripted_clip(path):
    """A TorchScript archive of a tiny CLIP (OpenAI ships its weights in this form)."""
    # OpenAI's build_model infers text heads as width // 64: files without dims need width 64.
    model = restore.tiny_clip(6, transformer_width=64, transformer_heads=1)
    traced = torch.jit.trace(model, (torch.randn(1, 3, 32, 32), clip.tokenize(["a cat"])), check_trace=False)
    torch.jit.save(traced, str(path))
    return model


@pytest.mark.filterwarnings("ignore")  # tracing warnings of torch.jit
def test_torchscript_backbone_needs_openai_checksum(data_root, tmp_path, monkeypatch, capsys, plain_known):
    from restore.torchscript import file_sha256

    path = tmp_path / "clip.pt"
    model = scripted_clip(path)
    sha = file_sha256(str(path))
    calls = []
    jit_load = torch.jit.load
    monkeypatch.setattr(torch.jit, "load", lambda *a, **k: calls.append(a) or jit_load(*a, **k))
    capsys.readouterr()  # tracing warnings
    code, _ = cli(data_root, tmp_path / "out", opts=("MODEL.BACKBONE.PATH", str(path)))
    stopped(capsys, code, str(path), sha, "clip.clip._MODELS", "--trust-files")
    assert calls == []  # the archive was never run
    # The same file under a checksum of OpenAI's table is accepted, and is run.
    monkeypatch.setitem(clip.clip._MODELS, "Tiny/32",
                        f"https://openaipublic.azureedge.net/clip/models/{sha}/Tiny-32.pt")
    loaded = restore.load_clip(str(path))
    assert len(calls) == 1
    for key, value in model.state_dict().items():
        assert torch.equal(loaded.state_dict()[key], value), key


@pytest.mark.filterwarnings("ignore")  # tracing warnings of torch.jit
def test_torchscript_backbone_trusted(tmp_path, plain_known):
    path = tmp_path / "clip.pt"
    model = scripted_clip(path)
    with pytest.raises(UntrustedFileError):
        restore.load_clip(str(path))
    loaded = restore.load_clip(str(path), trust=True)
    assert torch.equal(loaded.visual.proj, model.visual.proj)


@pytest.mark.filterwarnings("ignore")  # tracing warnings of torch.jit
def test_torchscript_path_for_open_clip_is_checked(tmp_path):
    """open_clip's loader would run a TorchScript MODEL.BACKBONE.PATH too: the same check first."""
    pytest.importorskip("open_clip")
    path = tmp_path / "clip.pt"
    scripted_clip(path)
    cfg = restore.get_cfg_default()
    cfg.MODEL.BACKBONE.NAME, cfg.MODEL.BACKBONE.PATH = "open_clip:ViT-B-32", str(path)
    with pytest.raises(UntrustedFileError, match=re.escape(f"{path} is a TorchScript archive")):
        restore.build_backbone(cfg)


def test_openai_checksums_come_from_the_model_table():
    from restore.torchscript import openai_checksums

    sums = openai_checksums()
    # Published in OpenAI's download URL of ViT-B/16.
    assert sums["5806e77cd80f8b59890b7e101eabd078d9fb84e6937f9e85e4ecb61988df416f"] == "ViT-B/16"
    assert sorted(sums.values()) == sorted(clip.clip._MODELS)


def test_file_sha256_in_chunks(tmp_path):
    import hashlib

    from restore.torchscript import file_sha256

    path = tmp_path / "f.bin"
    data = bytes(range(256)) * 10000  # 2.5 MiB: several chunks
    path.write_bytes(data)
    assert file_sha256(str(path)) == hashlib.sha256(data).hexdigest()


# ------------------------------------------------------------------------------------ config files
@pytest.mark.parametrize("flag", ["--config-file", "--dataset-config-file"])
def test_python_config_is_refused(flag, tmp_path, capsys):
    marker = tmp_path / "marker"
    config = tmp_path / "evil.py"
    config.write_text(f"import os\nos.mkdir({str(marker)!r})\nfrom yacs.config import CfgNode\ncfg = CfgNode()\n")
    with pytest.raises(SystemExit) as info:
        train.main(["--engine", "native", "--trainer", TRAINER, flag, str(config)])
    line = stopped(capsys, info.value.code, str(config), "only yaml files (.yaml, .yml)")
    assert line.endswith("write its keys in yaml.")
    assert not marker.exists()
    with open(config) as f:  # positive control: yacs itself runs a .py config
        CfgNode.load_cfg(f)
    assert marker.is_dir()


def test_yml_config_is_read_and_trust_is_off_by_default(tmp_path):
    config = tmp_path / "m.yml"
    config.write_text("OPTIM:\n  MAX_EPOCH: 7\n")
    cfg = train.setup_cfg(train.build_parser().parse_args(["--config-file", str(config)]))
    assert cfg.OPTIM.MAX_EPOCH == 7 and cfg.TRUST_FILES is False
    for argv in (["--trust-files"], ["TRUST_FILES", "True"]):  # the flag, or the key
        assert train.setup_cfg(train.build_parser().parse_args(argv)).TRUST_FILES is True


# ------------------------------------------------------------------------------ one loader for all
def _calls(text, name):
    """The argument text of every call `name(...)` in `text` (parentheses balanced)."""
    found = []
    for m in re.finditer(re.escape(name) + r"\(", text):
        depth, i = 1, m.end()
        while depth and i < len(text):
            depth += {"(": 1, ")": -1}.get(text[i], 0)
            i += 1
        found.append(text[m.end():i - 1])
    return found


def test_every_load_goes_through_the_safe_loaders():
    """Nothing outside restore/safe_pickle.py and restore/torchscript.py unpickles or runs a file:
    torch.load only with weights_only=True, no pickle.load(s) / Unpickler / torch.jit.load, and yacs
    reads configs in restore/config.py only (as yaml text)."""
    own = {"restore/safe_pickle.py", "restore/torchscript.py"}
    sources = [os.path.relpath(os.path.join(d, f), ROOT)
               for folder in ("restore", "trainers", "datasets", "benchmarks")
               for d, _, files in os.walk(os.path.join(ROOT, folder)) for f in files if f.endswith(".py")]
    sources += [f for f in os.listdir(ROOT) if f.endswith(".py")]
    assert "restore/engine/checkpoint.py" in sources and "train.py" in sources
    offenders = []
    for rel in sorted(set(sources) - own):
        with open(os.path.join(ROOT, rel)) as f:
            text = f.read()
        offenders += [(rel, "torch.load", a) for a in _calls(text, "torch.load") if "weights_only=True" not in a]
        for name in ("pickle.load", "pickle.loads", "Unpickler", "jit.load"):
            offenders += [(rel, name) for _ in _calls(text, name)]
        if rel != "restore/config.py":
            offenders += [(rel, "load_cfg") for _ in _calls(text, "load_cfg")]
    assert offenders == []
