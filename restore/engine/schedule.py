"""Dassl's per-epoch learning rate (`dassl.optim.build_lr_scheduler`, docs/REPRODUCING.md section 4) without Dassl.

The schedule is stepped once per epoch, after the optimizer step of the epoch's last batch, so the LR of
epoch e (0-based) is the value after e steps:
- warm-up (OPTIM.WARMUP_EPOCH = W > 0), epochs e < W: "constant" -> WARMUP_CONS_LR; "linear" ->
  WARMUP_MIN_LR at e = 0, then LR * e / W.
- after it, the successor schedule ("single_step", "multi_step" or "cosine" with T = MAX_EPOCH) at step
  k = e - W (or k = e when WARMUP_RECOUNT is False, in which case Dassl's successor restarts from the base
  LR at step W and decays relative to it: LR * f(e) / f(W), reproduced here).
With the CLIP configs (cosine, 1 constant warm-up epoch at 1e-5): 1e-5, then LR * (1 + cos(pi (e-1) / E)) / 2.

`epoch_lr(optim_cfg, epoch)` is the plain function; `EpochLR` is a torch LRScheduler around it whose
state is plain numbers (so checkpoints load with weights_only=True) and whose constructor does not pass
the `verbose` argument that torch 2.7 removed.
"""
import bisect
import math

import torch

SCHEDULERS = ("single_step", "multi_step", "cosine")
WARMUP_TYPES = ("constant", "linear")


class ScheduleError(ValueError):
    """An OPTIM.* value the schedule cannot use; the message names the key."""


def _decay(optim_cfg):
    """f(k): the successor's LR at step k as a fraction of the base LR."""
    name, gamma = optim_cfg.LR_SCHEDULER, optim_cfg.GAMMA
    stepsize, max_epoch = optim_cfg.STEPSIZE, optim_cfg.MAX_EPOCH
    if name == "single_step":
        if isinstance(stepsize, (list, tuple)):
            stepsize = stepsize[-1]
        if not isinstance(stepsize, int):
            raise ScheduleError(f"OPTIM.STEPSIZE must be an int for single_step, got {stepsize!r}")
        if stepsize <= 0:
            stepsize = max_epoch
        return lambda k: gamma ** (k // stepsize)
    if name == "multi_step":
        if not isinstance(stepsize, (list, tuple)):
            raise ScheduleError(f"OPTIM.STEPSIZE must be a list for multi_step, got {stepsize!r}")
        milestones = sorted(stepsize)
        return lambda k: gamma ** bisect.bisect_right(milestones, k)
    if name == "cosine":
        t_max = float(max_epoch)
        return lambda k: (1 + math.cos(math.pi * k / t_max)) / 2
    raise ScheduleError(f"OPTIM.LR_SCHEDULER is {name!r}; valid: {', '.join(SCHEDULERS)}")


def epoch_lr(optim_cfg, epoch: int, base_lr: float = None) -> float:
    """The LR that epoch `epoch` (0-based) runs at, for a parameter group with `base_lr`
    (default OPTIM.LR)."""
    base_lr = optim_cfg.LR if base_lr is None else base_lr
    decay = _decay(optim_cfg)
    warmup = optim_cfg.WARMUP_EPOCH
    if warmup is None or warmup <= 0:
        return base_lr * decay(epoch)
    if optim_cfg.WARMUP_TYPE not in WARMUP_TYPES:
        raise ScheduleError(f"OPTIM.WARMUP_TYPE is {optim_cfg.WARMUP_TYPE!r}; valid: "
                            f"{', '.join(WARMUP_TYPES)}")
    if epoch < warmup:
        if optim_cfg.WARMUP_TYPE == "constant":
            return optim_cfg.WARMUP_CONS_LR
        return optim_cfg.WARMUP_MIN_LR if epoch == 0 else base_lr * epoch / warmup
    if optim_cfg.WARMUP_RECOUNT:
        return base_lr * decay(epoch - warmup)
    start = decay(warmup)
    return base_lr * decay(epoch) / start if start else 0.0


class EpochLR(torch.optim.lr_scheduler.LRScheduler):
    """Sets every parameter group's LR to `epoch_lr(optim_cfg, last_epoch, group's initial LR)`.

    `step()` once per epoch, after the last batch (as Dassl's CLIP trainers call `update_lr()`)."""

    def __init__(self, optimizer, optim_cfg, last_epoch: int = -1):
        # Plain values only: the config node itself must not end up in the state.
        keys = ("LR", "LR_SCHEDULER", "STEPSIZE", "GAMMA", "MAX_EPOCH", "WARMUP_EPOCH",
                "WARMUP_TYPE", "WARMUP_CONS_LR", "WARMUP_MIN_LR", "WARMUP_RECOUNT")
        self.optim_values = {k: optim_cfg[k] for k in keys}
        _decay(self._cfg)  # validate now, not at the first step
        epoch_lr(self._cfg, 0)
        super().__init__(optimizer, last_epoch)

    @property
    def _cfg(self):
        return _Values(self.optim_values)

    def get_lr(self):
        return [epoch_lr(self._cfg, self.last_epoch, base) for base in self.base_lrs]

    def _get_closed_form_lr(self):
        return self.get_lr()

    def state_dict(self):
        return {"last_epoch": self.last_epoch, "base_lrs": list(self.base_lrs),
                "_step_count": self._step_count, "_last_lr": list(self._last_lr),
                "optim_values": {k: list(v) if isinstance(v, tuple) else v
                                 for k, v in self.optim_values.items()}}

    def load_state_dict(self, state_dict):
        self.last_epoch = int(state_dict["last_epoch"])
        self.base_lrs = list(state_dict.get("base_lrs", self.base_lrs))
        self._step_count = int(state_dict.get("_step_count", self.last_epoch + 1))
        lrs = self.get_lr()
        for group, lr in zip(self.optimizer.param_groups, lrs):
            group["lr"] = lr
        self._last_lr = lrs


class _Values(dict):
    """Attribute access over a plain dict, enough for `epoch_lr`."""

    __getattr__ = dict.__getitem__


def build_lr_scheduler(optimizer, optim_cfg) -> EpochLR:
    return EpochLR(optimizer, optim_cfg)
