"""Running averages for the training log line (Dassl's AverageMeter / MetricMeter formats), and the steps'
logged values kept on the device until a log line is written (`PendingSteps`)."""
from collections import OrderedDict

import torch


class AverageMeter:
    def __init__(self):
        self.val = self.avg = self.sum = 0.0
        self.count = 0

    def update(self, val, n=1):
        self.val = float(val)
        self.sum += self.val * n
        self.count += n
        self.avg = self.sum / self.count


class MetricMeter:
    """One AverageMeter per logged name; str() -> "loss 1.2345 (1.3456) acc 50.0000 (43.7500)"."""

    def __init__(self, delimiter=" "):
        self.meters = OrderedDict()
        self.delimiter = delimiter

    def update(self, values: dict):
        for name, value in values.items():
            self.meters.setdefault(name, AverageMeter()).update(value)

    def __str__(self):
        return self.delimiter.join(f"{name} {m.val:.4f} ({m.avg:.4f})" for name, m in self.meters.items())

    def state(self) -> dict:
        """{name: [val, sum, count]}: what a mid-epoch checkpoint keeps so that the resumed epoch's log lines
        average over the whole epoch."""
        return {name: [m.val, m.sum, m.count] for name, m in self.meters.items()}

    def load(self, state: dict) -> None:
        for name, (val, total, count) in state.items():
            meter = self.meters.setdefault(name, AverageMeter())
            meter.val, meter.sum, meter.count = float(val), float(total), int(count)
            meter.avg = meter.sum / meter.count if meter.count else 0.0


class PendingSteps:
    """The logged values of the training steps since the last log line, kept on the device (float64, so that
    the numbers read later equal a per-step `.item()`): `write` reads them all with one host sync, then
    updates the meter and writes the TensorBoard scalars step by step, in order, as a per-step loop would."""

    def __init__(self):
        self.steps = []  # (n_iter, lr, names, values [len(names)] float64 on the device)

    def add(self, n_iter: int, lr: float, values: dict) -> None:
        """Keep one step's values ({name: 0-dim tensor}); `lr` is the LR after its update (a Python float)."""
        stacked = torch.stack([v.detach().reshape(()).to(torch.float64) for v in values.values()])
        self.steps.append((n_iter, lr, list(values), stacked))

    def write(self, meter: MetricMeter, write_scalar) -> None:
        """Update `meter` with every kept step and call write_scalar("train/<name>", running mean, n_iter)
        and ("train/lr", lr, n_iter) for each; then forget them."""
        if not self.steps:
            return
        numbers = torch.cat([values for *_, values in self.steps]).tolist()  # the one host sync
        at = 0
        for n_iter, lr, names, _ in self.steps:
            meter.update(dict(zip(names, numbers[at:at + len(names)])))
            at += len(names)
            for name, average in meter.meters.items():
                write_scalar("train/" + name, average.avg, n_iter)
            write_scalar("train/lr", lr, n_iter)
        self.steps = []
