"""The per-epoch LR of the native engine against docs/REPRODUCING.md section 4 and torch's own schedulers; the optimizer
builder; the precision choice."""
import math

import pytest
import torch

import restore
from restore.engine import (EpochLR, OptimizerError, Precision, PrecisionError, ScheduleError,
                            build_optimizer, epoch_lr)

# docs/REPRODUCING.md section 4: sgd, cosine, 1 constant warm-up epoch at 1e-5, LR 0.0035, MAX_EPOCH 10.
ANCHOR_TABLE = [1.0e-5, 3.500e-3, 3.414e-3, 3.166e-3, 2.779e-3, 2.291e-3, 1.750e-3, 1.209e-3,
                7.21e-4, 3.34e-4]


def optim_cfg(**kw):
    cfg = restore.get_cfg_default()
    o = cfg.OPTIM
    o.NAME, o.LR, o.MAX_EPOCH, o.LR_SCHEDULER = "sgd", 0.0035, 10, "cosine"
    o.WARMUP_EPOCH, o.WARMUP_TYPE, o.WARMUP_CONS_LR = 1, "constant", 1e-5
    for k, v in kw.items():
        o[k] = v
    return o


def stepped(o, epochs=None, base_lr=None):
    """The LR each epoch runs at, stepping EpochLR once per epoch after an optimizer step."""
    p = torch.nn.Parameter(torch.zeros(3))
    opt = torch.optim.SGD([p], lr=o.LR if base_lr is None else base_lr)
    sched = EpochLR(opt, o)
    lrs = []
    for _ in range(epochs or o.MAX_EPOCH):
        lrs.append(opt.param_groups[0]["lr"])
        p.grad = torch.ones(3)
        opt.step()
        sched.step()
    return lrs


def test_anchor_table():
    o = optim_cfg()
    for e, want in enumerate(ANCHOR_TABLE):
        assert epoch_lr(o, e) == pytest.approx(want, rel=2e-3), e
    assert stepped(o) == pytest.approx([epoch_lr(o, e) for e in range(10)], rel=1e-12)
    # The exact closed form: e >= 1 runs at LR (1 + cos(pi (e-1) / E)) / 2.
    for e in range(1, 10):
        assert epoch_lr(o, e) == pytest.approx(0.0035 * (1 + math.cos(math.pi * (e - 1) / 10)) / 2)


@pytest.mark.parametrize("name,kw,torch_sched", [
    ("cosine", {}, lambda opt: torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=10.0)),
    ("single_step", {"STEPSIZE": (3,), "GAMMA": 0.5},
     lambda opt: torch.optim.lr_scheduler.StepLR(opt, step_size=3, gamma=0.5)),
    ("single_step", {"STEPSIZE": (-1,)},  # <= 0: the step size is MAX_EPOCH
     lambda opt: torch.optim.lr_scheduler.StepLR(opt, step_size=10, gamma=0.1)),
    ("multi_step", {"STEPSIZE": (2, 5), "GAMMA": 0.3},
     lambda opt: torch.optim.lr_scheduler.MultiStepLR(opt, milestones=[2, 5], gamma=0.3)),
])
@pytest.mark.parametrize("warmup", [0, 2])
@pytest.mark.parametrize("recount", [True, False])
def test_matches_torch_successor(name, kw, torch_sched, warmup, recount):
    """After the warm-up, Dassl delegates to torch's scheduler (built first, stepped once per epoch;
    with WARMUP_RECOUNT False its last_epoch is set to the warm-up length): compare with it."""
    o = optim_cfg(LR_SCHEDULER=name, WARMUP_EPOCH=warmup, WARMUP_TYPE="linear",
                  WARMUP_MIN_LR=2e-5, WARMUP_RECOUNT=recount, **kw)
    p = torch.nn.Parameter(torch.zeros(1))
    opt = torch.optim.SGD([p], lr=o.LR)
    succ = torch_sched(opt)
    if warmup and not recount:
        succ.last_epoch = warmup
    expected = []
    for e in range(10):
        if e < warmup:
            expected.append(2e-5 if e == 0 else o.LR * e / warmup)
            continue
        if e > warmup:
            opt.step()
            succ.step()
        expected.append(succ.get_last_lr()[0] if e > warmup else o.LR)
    assert [epoch_lr(o, e) for e in range(10)] == pytest.approx(expected, rel=1e-9)
    assert stepped(o) == pytest.approx(expected, rel=1e-9)


def test_linear_warmup_and_groups():
    o = optim_cfg(WARMUP_EPOCH=3, WARMUP_TYPE="linear", WARMUP_MIN_LR=1e-6)
    assert [epoch_lr(o, e) for e in range(4)] == pytest.approx([1e-6, 0.0035 / 3, 0.007 / 3, 0.0035])
    # A parameter group with another base LR (OPTIM.STAGED_LR) scales with it.
    assert epoch_lr(o, 5, base_lr=0.00035) == pytest.approx(epoch_lr(o, 5) / 10)


def test_scheduler_state_is_plain_and_resumes(tmp_path):
    o = optim_cfg()
    p = torch.nn.Parameter(torch.zeros(1))
    opt = torch.optim.SGD([p], lr=o.LR)
    sched = EpochLR(opt, o)
    for _ in range(4):
        opt.step()
        sched.step()
    torch.save(sched.state_dict(), tmp_path / "s.pt")
    state = torch.load(tmp_path / "s.pt", weights_only=True)
    opt2 = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=o.LR)
    sched2 = EpochLR(opt2, o)
    sched2.load_state_dict(state)
    assert opt2.param_groups[0]["lr"] == pytest.approx(epoch_lr(o, 4))
    opt2.step()
    sched2.step()
    assert opt2.param_groups[0]["lr"] == pytest.approx(epoch_lr(o, 5))


def test_bad_schedule_values():
    with pytest.raises(ScheduleError, match="LR_SCHEDULER"):
        stepped(optim_cfg(LR_SCHEDULER="exp"))
    with pytest.raises(ScheduleError, match="WARMUP_TYPE"):
        epoch_lr(optim_cfg(WARMUP_TYPE="cubic"), 0)


@pytest.mark.parametrize("name,cls", [("sgd", torch.optim.SGD), ("adam", torch.optim.Adam),
                                      ("adamw", torch.optim.AdamW), ("amsgrad", torch.optim.Adam),
                                      ("rmsprop", torch.optim.RMSprop)])
def test_optimizers(name, cls):
    o = optim_cfg(NAME=name)
    p = torch.nn.Parameter(torch.zeros(2))
    opt = build_optimizer(None, [p], o)
    assert isinstance(opt, cls)
    g = opt.param_groups[0]
    assert g["lr"] == 0.0035 and g["weight_decay"] == 5e-4
    if name == "sgd":
        assert g["momentum"] == 0.9 and g["dampening"] == 0 and g["nesterov"] is False
    if name == "amsgrad":
        assert g["amsgrad"] is True


def test_unknown_optimizer_and_staged_lr():
    with pytest.raises(OptimizerError, match="valid: sgd"):
        build_optimizer(None, [torch.nn.Parameter(torch.zeros(1))], optim_cfg(NAME="lion"))
    model = torch.nn.Sequential()
    model.add_module("head", torch.nn.Linear(2, 2))
    model.add_module("body", torch.nn.Linear(2, 2))
    o = optim_cfg(STAGED_LR=True, NEW_LAYERS=("head",), BASE_LR_MULT=0.1)
    opt = build_optimizer(model, model.parameters(), o)
    assert [g["lr"] for g in opt.param_groups] == pytest.approx([0.00035, 0.0035])
    assert {id(p) for p in opt.param_groups[1]["params"]} == {id(p) for p in model.head.parameters()}


def test_precision_on_cpu_is_fp32():
    cfg = restore.get_cfg_default()
    cfg.TRAINER.NAME = "MaPLe"
    p = Precision.from_cfg(cfg, "cpu")
    assert p.requested == "fp16" and p.mode == "fp32" and p.scaler is None
    cfg.TRAINER.MAPLE.PREC = "fp8"
    with pytest.raises(PrecisionError, match="TRAINER.MAPLE.PREC"):
        Precision.from_cfg(cfg, "cpu")
