"""After every training epoch, one line with the time left, estimated from measured epoch times; and once,
on the CPU, a hint when the machine runs more threads than it has cores.

Dassl's per-batch line keeps its own `eta` (the current epoch's mean batch time times the batches left,
docs/REPRODUCING.md section 5). That estimate restarts with every epoch and leaves out the time between
epochs (loader start, checkpoint), so on a loaded machine it swings by hours. The line here uses the
wall-clock times of whole epochs instead:

    Progress: epoch 3/30 took 0:00:02; 27 epochs left, about 0:00:54 (from epochs 2-3)

The hint compares the 1-minute load average (runnable threads, machine-wide) with the machine's cores:
above them, some threads wait for a core, and torch's threads, which meet at every operation, slow the
whole run far more than the load suggests. The machine's cores rather than the run's own: a run pinned to
some cores (`taskset`, a batch scheduler) is not slowed by jobs on the others.
"""
import datetime
import logging
import os
import time

import torch

log = logging.getLogger(__name__)

WINDOW = 5  # epochs in the mean: recent enough to follow a change of load, long enough to smooth one slow epoch


def duration(seconds: float) -> str:
    """H:MM:SS, as Dassl prints its eta."""
    return str(datetime.timedelta(seconds=round(seconds)))


def plural(n: int) -> str:
    return "" if n == 1 else "s"


def recent(epoch_times, window: int = WINDOW) -> list:
    """The epoch times (seconds) the estimate averages: the last `window`, leaving out the run's first
    epoch once two others are measured. The first carries the start-up (worker processes, first
    allocations: twice the others on the testbed); one other epoch alone is too noisy on a loaded machine."""
    times = list(epoch_times)
    return (times[1:] if len(times) > 2 else times)[-window:]


def eta_seconds(epoch_times, epochs_left: int, window: int = WINDOW) -> float:
    """Seconds left: the mean of the `recent` epoch times times the epochs left."""
    times = recent(epoch_times, window)
    return sum(times) / len(times) * epochs_left


def load_average():
    """The 1-minute load average, or None where the system does not report one."""
    try:
        return os.getloadavg()[0]
    except (AttributeError, OSError):
        return None


def oversubscription_hint(load, cores: int, threads: int):
    """One line when the load average exceeds the machine's cores, else None."""
    if load is None or load <= cores:
        return None
    fix = (f"set RESTORE_NUM_THREADS to {cores} or less" if threads > cores else
           "give each job its own cores (`taskset -c 0 bash ...` runs on core 0 with one thread) or run fewer "
           "jobs at once")
    return (f"Note: this machine is oversubscribed (load average {load:.1f} on {cores} cores; this run uses "
            f"{threads} threads), so this run will be slower than on an idle machine: {fix}.")


class EpochProgress:
    """Call `epoch_done(epoch)` after every epoch (0-based); the clock starts at construction.

    `clock`, `load`, `cores` and `threads` are there for tests; `on_cpu` False (a GPU run) turns the hint off."""

    def __init__(self, max_epoch: int, on_cpu: bool = True, clock=time.monotonic, load=None, cores=None,
                 threads=None):
        self.max_epoch = max_epoch
        self.clock, self.load = clock, load or load_average
        self.cores = cores or os.cpu_count() or 1
        self.threads = threads or torch.get_num_threads()
        self.hint_pending = on_cpu
        self.epochs, self.epoch_times = [], []  # epoch numbers (1-based) and their wall-clock seconds
        self.last = clock()

    def epoch_done(self, epoch: int) -> None:
        now = self.clock()
        self.epochs.append(epoch + 1)
        self.epoch_times.append(now - self.last)
        self.last = now
        left = self.max_epoch - epoch - 1
        line = f"Progress: epoch {epoch + 1}/{self.max_epoch} took {duration(self.epoch_times[-1])}"
        if left:
            used = recent(self.epochs)
            span = f"epoch {used[0]}" if len(used) == 1 else f"epochs {used[0]}-{used[-1]}"
            eta = duration(eta_seconds(self.epoch_times, left))
            line += f"; {left} epoch{plural(left)} left, about {eta} (from {span})"
        log.info(line)
        if self.hint_pending:
            hint = oversubscription_hint(self.load(), self.cores, self.threads)
            if hint:
                log.warning(hint)
                self.hint_pending = False
