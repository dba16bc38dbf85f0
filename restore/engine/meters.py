"""Running averages for the training log line (Dassl's AverageMeter / MetricMeter formats)."""
from collections import OrderedDict


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
