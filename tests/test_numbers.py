"""Every number checked, and one sync point instead of one per step (issue 23, sections 1 and 2).

- Config values: a non-finite float in any key (1e999 on the command line, .inf in a yaml file, a method's
  key) and a general key outside its meaning (a zero in INPUT.PIXEL_STD, a negative seed other than -1)
  stop the run before any work, in one line naming the key, with no output folder made.
- SEED -1 (unseeded) neither writes nor reads a few-shot cache under a seed name.
- parse_test_res.py names the seed folders whose result is nan or inf and refuses to average them.
- Training that turns non-finite stops at the next check point (the print frequency) with one line naming
  the step and the likely key; no accuracy is reported and no checkpoint of that state is written. With a
  gradient scaler, infinite gradients (skipped steps) are not an error.
- A training step reads nothing on the host: no tensor becomes a Python number (`item`, `bool`, `float`,
  `tolist`, ...) in any method's step, and a native epoch reads the device only at its check points.
  Where CUDA exists, torch.cuda.set_sync_debug_mode("error") holds through a step.
"""
import os
import traceback

import pytest
import torch
from torch.overrides import TorchFunctionMode

import parse_test_res
import restore
import train
from restore.engine import EngineCore, Trainer
from restore.engine.flags import RunFlags
from restore.methods import registry
from test_engine_fakes import cli_opts, make_cfg, make_oxford_pets

DATASET_CFG = "configs/datasets/oxford_pets.yaml"
CLASSES = ["cat", "golden_retriever", "sports car", "tree"]


@pytest.fixture(scope="module")
def data_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("data")
    make_oxford_pets(str(root))
    return str(root)


def run(data_root, out, trainer="CoOp", extra=(), opts=()):
    return train.main(["--root", data_root, "--seed", "1", "--trainer", trainer, "--engine", "native",
                       "--dataset-config-file", DATASET_CFG, "--output-dir", str(out), *extra,
                       *cli_opts(trainer, "DATASET.NUM_SHOTS", 4, *opts)])


def error_line(capsys, *args, **kwargs):
    """Run, expect exit 1 with one error line (no traceback); return it."""
    capsys.readouterr()
    with pytest.raises(SystemExit) as info:
        run(*args, **kwargs)
    assert info.value.code == 1
    err = capsys.readouterr().err
    errors = [line for line in err.splitlines() if line.startswith("Error: ")]
    assert "Traceback" not in err and len(errors) == 1, err
    return errors[0]


# ------------------------------------------------------------------------------------ config values
@pytest.mark.parametrize("opts,yaml_text,key", [
    (["OPTIM.LR", "1e999"], None, "OPTIM.LR is inf; it must be a finite number"),
    ([], "OPTIM:\n  WEIGHT_DECAY: .inf\n", "OPTIM.WEIGHT_DECAY is inf; it must be a finite number"),
    (["TRAINER.RESTORE.FS.WEIGHT", "-1e999"], None, "TRAINER.RESTORE.FS.WEIGHT is -inf; it must be a finite"),
    ([], "TRAINER:\n  PROMPTSRC:\n    GPA_STD: .nan\n", "TRAINER.PROMPTSRC.GPA_STD is nan; it must be a finite"),
    (["INPUT.PIXEL_STD", "[0.26, 0.0, 0.27]"], None, "INPUT.PIXEL_STD is [0.26, 0.0, 0.27]; it must be greater "
                                                     "than 0 in every channel"),
    (["SEED", "-5"], None, "SEED is -5; it must be -1 (unseeded) or at least 0"),
    (["OPTIM.ADAM_BETA2", "1.0"], None, "OPTIM.ADAM_BETA2 is 1.0; it must be at least 0 and less than 1"),
    (["INPUT.COLORJITTER_H", "0.7"], None, "INPUT.COLORJITTER_H is 0.7; it must be at least 0 and at most 0.5"),
    (["TEST.FINAL_MODEL", "best"], None, "TEST.FINAL_MODEL is 'best'; it must be one of last_step, best_val"),
])
def test_a_bad_number_stops_before_any_work(opts, yaml_text, key, data_root, tmp_path, capsys):
    extra = []
    if yaml_text is not None:
        (tmp_path / "bad.yaml").write_text(yaml_text)
        extra = ["--config-file", str(tmp_path / "bad.yaml")]
    line = error_line(capsys, data_root, tmp_path / "out", extra=extra, opts=opts)
    assert key in line and line.endswith(("to a valid value.", "to one of them.")), line
    assert not os.path.exists(tmp_path / "out")  # before any work


def test_every_default_and_every_shipped_config_passes():
    from restore.checks import check_config
    check_config(restore.get_cfg_default())
    for trainer in registry.names():
        cfg = make_cfg(trainer, "", "")
        check_config(cfg)


def test_unseeded_runs_use_no_fewshot_cache(data_root, tmp_path, capsys):
    cache = os.path.join(data_root, "oxford_pets", "split_fewshot", "shot_4-seed_-1.pkl")
    argv = ["--root", data_root, "--trainer", "CoOp", "--engine", "native", "--dataset-config-file",
            DATASET_CFG, "--output-dir", str(tmp_path / "a"), *cli_opts("CoOp", "DATASET.NUM_SHOTS", 4)]
    train.main(argv)  # --seed not given: SEED -1
    assert not os.path.exists(cache)
    log = open(tmp_path / "a" / "log.txt").read()
    assert "few-shot data" not in log and "few-shot cache: none" in log
    # CoOp's cache of an unseeded run (it writes shot_K-seed_-1.pkl) is not used.
    os.makedirs(os.path.dirname(cache), exist_ok=True)
    with open(cache, "wb") as f:
        f.write(b"not read")
    capsys.readouterr()
    train.main(argv[:-len(cli_opts("CoOp", "DATASET.NUM_SHOTS", 4)) - 2] + [
        "--output-dir", str(tmp_path / "b"), *cli_opts("CoOp", "DATASET.NUM_SHOTS", 4)])
    assert f"Note: SEED is -1 (unseeded): {cache} is not used" in capsys.readouterr().out
    assert open(cache, "rb").read() == b"not read"


def test_parse_test_res_refuses_nan_and_inf_seeds(tmp_path, capsys):
    for seed, acc in (("seed1", "71.2"), ("seed2", "nan"), ("seed3", "1e999")):
        os.makedirs(tmp_path / seed)
        (tmp_path / seed / "log.txt").write_text(f"Finish training\n=> result\n* accuracy: {acc}%\n")
    with pytest.raises(SystemExit) as info:
        parse_test_res.main([str(tmp_path)])
    assert "seed2 (nan%), seed3 (inf%)" in str(info.value) and "not averaged" in str(info.value)
    os.remove(tmp_path / "seed2" / "log.txt")
    os.remove(tmp_path / "seed3" / "log.txt")
    os.rmdir(tmp_path / "seed2")
    os.rmdir(tmp_path / "seed3")
    parse_test_res.main([str(tmp_path)])
    assert "* accuracy: 71.20% +- 0.00%" in capsys.readouterr().out


# ------------------------------------------------------------------------------- non-finite training
def test_non_finite_training_stops_at_the_check_point(data_root, tmp_path, capsys):
    """RESTORE_m with a finite but huge FS.WEIGHT: the fs term overflows float32 at the first step; the run
    stops at the first check (PRINT_FREQ 2) naming step 1 and the key; nothing is evaluated or saved."""
    out = tmp_path / "huge"
    line = error_line(capsys, data_root, out, trainer="RESTORE_m",
                      opts=["TRAINER.RESTORE.FS.WEIGHT", "1e39", "TRAIN.CHECKPOINT_FREQ", 1])
    assert "at epoch 1/1, batch 1/6 (step 1)" in line and "fs inf" in line
    assert "Lower TRAINER.RESTORE.FS.WEIGHT (now 1e+39), which weights fs" in line
    log = open(out / "log.txt").read()
    assert line in log and "accuracy" not in log and "epoch [" not in log  # stopped at the first line
    assert not os.path.exists(out / "MultiModalPromptLearner")


def test_exploding_parameters_name_the_learning_rate(data_root, tmp_path, capsys):
    out = tmp_path / "lr"
    line = error_line(capsys, data_root, out, opts=["OPTIM.LR", "1e38", "OPTIM.WARMUP_EPOCH", 0,
                                                     "TRAIN.PRINT_FREQ", 3])
    assert "(step 1)" in line and "learned parameters or their gradients became non-finite" in line
    assert "Lower OPTIM.LR (now 1e+38)" in line
    assert "accuracy" not in open(out / "log.txt").read()


def core_for(trainer, scaler=None, *opts):
    torch.manual_seed(0)
    cfg = make_cfg(trainer, "", "", *opts)
    cfg.freeze()
    core = EngineCore.build(cfg, CLASSES, torch.device("cpu"))
    core.precision.scaler = scaler
    return core


def batch(seed=0):
    g = torch.Generator().manual_seed(seed)
    return {"img": torch.randn(4, 3, 32, 32, generator=g), "label": torch.tensor([0, 1, 2, 3])}


def test_a_scaler_skipping_infinite_gradients_is_no_error():
    """A GradScaler whose scale overflows the gradients skips those steps (and lowers its scale): the
    engine checks the loss and the parameters then, not the gradients. Without a scaler the same
    infinite gradients stop the run."""
    scaler = torch.amp.GradScaler("cpu", init_scale=2.0 ** 127)  # loss * 2^127: gradients overflow float32
    core = core_for("CoOp", scaler, "OPTIM.NAME", "sgd")
    before = core.params[0].detach().clone()
    for step in range(12):
        core.train_step(batch(step), 0, step, 12)
    assert not core.check().non_finite and scaler.get_scale() < 2.0 ** 127
    assert torch.isfinite(core.params[0]).all()
    assert not torch.equal(before, core.params[0])  # the steps that did not overflow were taken
    plain = core_for("CoOp", None, "OPTIM.NAME", "sgd")
    with torch.no_grad():
        plain.params[0].zero_()

    def finite_loss_infinite_gradient(b):  # sqrt at 0: the loss is 0, its gradient is not finite
        loss = torch.sqrt(plain.params[0].abs()).sum()
        return loss, {"loss": loss}

    plain.module.forward = finite_loss_infinite_gradient
    plain.train_step(batch(), 0, 0, 3)
    with pytest.raises(restore.engine.NonFiniteLossError, match=r"\(step 1\).*the loss was 0"):
        plain.check()


# ------------------------------------------------------------------------------------- host reads
CONVERSIONS = {"item", "__bool__", "tolist", "__float__", "__int__", "__index__", "numpy", "__format__",
               "__array__"}


CPU_SIDE = [os.sep + os.path.join("torch", "optim") + os.sep,  # an optimiser's CPU step counter
            os.sep + os.path.join("torch", "utils", "data") + os.sep, os.sep + "torchvision" + os.sep]


class HostReads(TorchFunctionMode):
    """Records where a tensor becomes a Python number. Left out, as they are no device reads: an optimiser's
    step counter (a CPU tensor by design), and data loading (sampler, transforms: CPU tensors before the
    batch is copied to the device)."""

    def __init__(self):
        super().__init__()
        self.seen = []

    def __torch_function__(self, func, types, args=(), kwargs=None):
        if getattr(func, "__name__", "") in CONVERSIONS:
            stack = traceback.extract_stack()[:-1]
            if not any(part in f.filename for f in stack for part in CPU_SIDE):
                ours = [f for f in stack if "restore" + os.sep in f.filename or f.filename.endswith("train.py")]
                self.seen.append(f"{func.__name__} at {ours[-1].filename}:{ours[-1].lineno}" if ours else
                                 f"{func.__name__} at {stack[-1].filename}:{stack[-1].lineno}")
        return func(*args, **(kwargs or {}))


@pytest.mark.parametrize("trainer", [n for n in registry.names() if n != "ZeroshotCLIP"])
def test_a_step_reads_nothing_on_the_host(trainer):
    core = core_for(trainer, None, "OPTIM.NAME", "adam")
    core.train_step(batch(0), 0, 0, 3)  # the first step (lazy state: Adam's moments)
    with HostReads() as reads:
        core.train_step(batch(1), 0, 1, 3)
        core.train_step(batch(2), 0, 2, 3)  # the epoch's last: the schedule steps
    assert reads.seen == []
    assert core.check() == (False, False, None)


def test_restore_options_read_nothing_on_the_host():
    for opts in (("TRAINER.RESTORE.FS.TEXT_CLASSES", 2, "TRAINER.RESTORE.FS.VISION_IMAGES", 2),
                 ("TRAINER.RESTORE.FS.PROMPT_FREE", "no_grad", "TRAINER.RESTORE.SURGERY.MODE", "fixed"),
                 ("TRAINER.RESTORE.FS.DEFINITION", "release", "TRAINER.RESTORE.SURGERY.MODE", "release")):
        core = core_for("RESTORE_m", None, *opts)
        core.train_step(batch(0), 0, 0, 2)
        with HostReads() as reads:
            core.train_step(batch(1), 0, 1, 2)
        assert reads.seen == [], opts


def test_a_native_epoch_reads_the_device_only_at_its_check_points(data_root, tmp_path):
    """6 steps, PRINT_FREQ 4: a check and a read of the logged values after step 4 and at the epoch's end
    (the flags' tolist and the values' tolist each time); nothing else in the loop."""
    cfg = make_cfg("CoOp", data_root, tmp_path, "DATASET.NUM_SHOTS", 4, "TRAIN.PRINT_FREQ", 4)
    cfg.freeze()
    trainer = Trainer(cfg)
    trainer.before_train()
    with HostReads() as reads:
        trainer.run_epoch()
    trainer.close_writer()
    ours = [r for r in reads.seen if "restore" in r]
    assert len(ours) == 4 and all(r.startswith("tolist at ") for r in ours), ours
    assert sorted({r.rsplit(os.sep, 1)[-1].split(":")[0] for r in ours}) == ["flags.py", "meters.py"]


@pytest.mark.skipif(not torch.cuda.is_available(), reason="CUDA only: torch.cuda.set_sync_debug_mode")
def test_a_cuda_step_does_not_synchronise():
    cfg = make_cfg("RESTORE_m", "", "", "USE_CUDA", True, "TRAINER.MAPLE.PREC", "fp32")
    cfg.freeze()
    core = EngineCore.build(cfg, CLASSES, torch.device("cuda"))
    core.train_step(batch(0), 0, 0, 3)
    torch.cuda.set_sync_debug_mode("error")
    try:
        core.train_step(batch(1), 0, 1, 3)
    finally:
        torch.cuda.set_sync_debug_mode("default")
    assert not core.check().non_finite


def test_run_flags_keep_the_first_bad_step():
    flags = RunFlags("cpu")
    flags.record(0, torch.tensor(True))
    flags.record(1, torch.tensor(False))
    flags.record(2, torch.tensor(False))
    flags.request_stop()
    assert flags.read() == (True, True, 1)
