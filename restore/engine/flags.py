"""The run's one small device tensor: what the training steps found, read on the host only at check points.

    flags = RunFlags(device)
    flags.record(step, finite)        # every step, on the device: no host sync
    flags.request_stop()              # from the host (a signal): travels with the next check
    seen = flags.read()               # a check point: reduced over the ranks, then one host read

Layout (int64): [non-finite seen (0/1), stop requested (0/1), -(first non-finite step + 1) or NONE]. The first
bad step is stored negated so that one MAX all-reduce gives every rank the flags of all and the EARLIEST bad
step of any rank. The native engine reads it at the print frequency, at the end of each epoch, before every
save and before every evaluation; the Dassl engine, whose loop reads the loss terms every step anyway, after
every step. Under torchrun every rank reads it at the same steps, so they stop together.
"""
from typing import NamedTuple, Optional

import torch

from ..distributed import world_size

NONE = -(2 ** 62)  # no non-finite step yet (the negated index of a step never reached)


class Seen(NamedTuple):
    non_finite: bool
    stop: bool
    first_bad_step: Optional[int]  # 0-based global step (epoch * batches + batch), or None


class RunFlags:
    def __init__(self, device):
        self.tensor = torch.tensor([0, 0, NONE], dtype=torch.int64, device=device)
        self._stop = False  # set on the host (a signal handler may); copied into the tensor at a step

    def record(self, step: int, finite: torch.Tensor) -> None:
        """Fold one step's finiteness (a 0-dim bool tensor on the device) in, without a host read."""
        bad = ~finite
        self.tensor[0] |= bad.to(torch.int64)
        self.tensor[2] = torch.where(bad & (self.tensor[2] == NONE), -(step + 1), self.tensor[2])
        if self._stop:
            self.tensor[1] = 1

    def request_stop(self) -> None:
        """Ask the run to stop at its next check point (the host flag reaches the tensor at the next step,
        or at the check itself)."""
        self._stop = True

    def read(self) -> Seen:
        """A check point: the flags of every rank (MAX all-reduce), read on the host (one sync)."""
        if self._stop:
            self.tensor[1] = 1
        flags = self.tensor
        if world_size() > 1:
            import torch.distributed as dist
            flags = flags.clone()
            dist.all_reduce(flags, op=dist.ReduceOp.MAX)
        non_finite, stop, first = flags.tolist()
        return Seen(bool(non_finite), bool(stop), None if first == NONE else -first - 1)
