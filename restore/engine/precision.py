"""Numerical precision from the trainer's PREC key (its first config node's PREC: TRAINER.MAPLE.PREC for
MaPLe, RESTORE_m and MaPLe_FSA), the one place that decides dtypes and devices:

- CPU: always fp32 (a note is printed when PREC asks for something else).
- CUDA "fp16": the frozen CLIP's weights in fp16 (`clip.model.convert_weights`), prompts, couplings and
  adapters stay fp32 (master weights), no loss scaling (as the CoOp-lineage fp16 path).
- CUDA "fp32": everything fp32.
- CUDA "amp": fp32 weights, fp16 autocast, GradScaler.
- CUDA "bf16": fp32 weights, bf16 autocast.
"""
import contextlib
import logging

import torch

from ..methods.spec import PRECISIONS

log = logging.getLogger(__name__)


class PrecisionError(ValueError):
    pass


def _grad_scaler():
    if hasattr(torch, "amp") and hasattr(torch.amp, "GradScaler"):
        return torch.amp.GradScaler("cuda")
    return torch.cuda.amp.GradScaler()  # torch < 2.3


def precision_key(cfg):
    """(full key, value) of the running trainer's precision, e.g. ("TRAINER.MAPLE.PREC", "fp16"), or
    (None, "fp32") for a method without one."""
    from ..checks import lookup
    from ..methods import registry
    key = registry.precision_key(cfg.TRAINER.NAME)
    value = lookup(cfg, key) if key else None
    return (key, value) if value is not None else (None, "fp32")


def frozen_weights_to_fp16(model):
    """PREC fp16: the frozen CLIP's weights in fp16, in place, as its makers convert them (the method's own
    parameters and buffers stay as they are)."""
    if type(model.clip).__module__.startswith("open_clip"):  # its own modules and casts
        from open_clip.model import convert_weights_to_lp
        convert_weights_to_lp(model.clip, dtype=torch.float16)
    else:
        from clip.model import convert_weights
        convert_weights(model.clip)


class Precision:
    def __init__(self, mode: str, device: torch.device, key: str = "PREC"):
        if mode not in PRECISIONS:
            raise PrecisionError(f"{key} is {mode!r}; valid: {', '.join(PRECISIONS)}")
        self.requested = mode
        self.device = torch.device(device)
        self.mode = mode if self.device.type == "cuda" else "fp32"
        self.scaler = _grad_scaler() if self.mode == "amp" else None

    @classmethod
    def from_cfg(cls, cfg, device):
        key, mode = precision_key(cfg)
        p = cls(mode, device, key or "PREC")
        if p.mode != p.requested:
            log.warning(f"Note: {key} is {p.requested!r}, but on {p.device.type} everything runs in fp32")
        return p

    def prepare(self, model):
        """Move `model` to the device and set its dtypes; returns it."""
        model.to(self.device)
        if self.mode == "fp16":
            frozen_weights_to_fp16(model)
        return model

    def autocast(self):
        if self.mode == "amp":
            return torch.autocast("cuda", dtype=torch.float16)
        if self.mode == "bf16":
            return torch.autocast("cuda", dtype=torch.bfloat16)
        return contextlib.nullcontext()

    def backward_and_step(self, loss, optimizer):
        optimizer.zero_grad()
        if self.scaler is not None:
            self.scaler.scale(loss).backward()
            self.scaler.step(optimizer)
            self.scaler.update()
        else:
            loss.backward()
            optimizer.step()

    def state_dict(self):
        return self.scaler.state_dict() if self.scaler is not None else None

    def load_state_dict(self, state):
        if self.scaler is not None and state:
            self.scaler.load_state_dict(state)
