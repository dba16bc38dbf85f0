"""The CPUs a run may use: torch's thread count, and a note when the DataLoader asks for more workers.

`os.cpu_count()` counts every core of the machine, also when the process is pinned to fewer
(`taskset`, a batch scheduler's affinity) or limited by a cgroup CPU quota (containers). Threads sized
by it oversubscribe the CPUs the process really has, and a loaded machine then runs many times slower.
So the thread count is, in this order:
- `RESTORE_NUM_THREADS` when set (an integer >= 1),
- `OMP_NUM_THREADS` when set (torch already follows it),
- else the CPUs available to this process: its affinity mask, capped by a cgroup quota.
"""
import logging
import math
import os
import warnings

log = logging.getLogger(__name__)

THREADS_ENV = "RESTORE_NUM_THREADS"
CGROUP_V2 = "/sys/fs/cgroup/cpu.max"
CGROUP_V1 = ("/sys/fs/cgroup/cpu/cpu.cfs_quota_us", "/sys/fs/cgroup/cpu/cpu.cfs_period_us")


def cgroup_cpu_limit(v2=CGROUP_V2, v1=CGROUP_V1):
    """CPUs allowed by the cgroup quota (a float, e.g. 1.5), or None when there is no quota.

    cgroup v2 `cpu.max` holds "<quota> <period>" in microseconds, or "max <period>"; cgroup v1 holds the two
    numbers in two files, quota -1 meaning none."""
    try:
        with open(v2) as f:
            quota, period = f.read().split()[:2]
        return None if quota == "max" else int(quota) / int(period)
    except (OSError, ValueError):
        pass
    try:
        with open(v1[0]) as fq, open(v1[1]) as fp:
            quota, period = int(fq.read()), int(fp.read())
        return None if quota <= 0 or period <= 0 else quota / period
    except (OSError, ValueError):
        return None


def available_cpus() -> int:
    """CPUs this process may run on: its affinity mask, capped by a cgroup quota (rounded down, at least 1)."""
    try:
        n = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        n = os.cpu_count() or 1
    quota = cgroup_cpu_limit()
    if quota is not None:
        n = min(n, math.floor(quota))
    return max(1, n)


def thread_count():
    """(threads, where the number comes from) by the rule of this module. Raises ValueError on a bad
    RESTORE_NUM_THREADS."""
    for name in (THREADS_ENV, "OMP_NUM_THREADS"):
        value = os.environ.get(name, "").strip()
        if not value:
            continue
        if not value.isdigit() or int(value) < 1:
            raise ValueError(f"{name}={value!r} is not a thread count: set it to an integer >= 1, "
                             f"or unset it to use the CPUs available to this process.")
        return int(value), name
    return available_cpus(), "the CPUs available to this process"


def configure_threads() -> int:
    """Set torch's intra-op thread count by the rule of this module, print it once, return it."""
    import torch
    n, source = thread_count()
    torch.set_num_threads(n)
    log.info(f"Threads: {n} ({source}; set {THREADS_ENV} to change)")
    return n


def check_num_workers(num_workers: int) -> bool:
    """Print one note when DATALOADER.NUM_WORKERS exceeds the available CPUs, and silence torch's own
    warning about it (repeated for every loader). The count itself is kept: each worker seeds its own random
    state, so the worker count is part of the augmentation stream, and a run must not depend on the machine
    it lands on. Returns whether the note was printed."""
    cpus = available_cpus()
    if num_workers <= cpus:
        return False
    log.warning(f"Note: DATALOADER.NUM_WORKERS is {num_workers} but this process has {cpus} CPU(s); data loading "
                f"may be slow. To lower it, append `DATALOADER.NUM_WORKERS {cpus}` to the train.py command (or "
                f"to a script's arguments). Each worker seeds its own augmentations, so a different count gives "
                f"a different (equally valid) augmentation stream.")
    warnings.filterwarnings("ignore", message=r"This DataLoader will create \d+ worker processes")
    return True
