"""Stopping on a signal (a preemption, a time limit) with a state the next run resumes from.

    with StopSignals(cfg.TRAIN.STOP_SIGNALS, core.flags) as signals:    # around the training loop
        ...                                  # a signal only sets a flag (core.flags.request_stop)
        if core.check().stop:                # a check point: every rank reads the same flags
            save ...; raise signals.stopped("at epoch 2/5, batch 3/9")     # RunStopped
    # train.py: RunStopped -> its message logged, the log closed, then RunStopped.finish()

A handler does nothing but set the host flag: the step in progress finishes, and the flag travels to every
rank in the run's one small device tensor (restore.engine.flags), read at the next check point (the native
engine: the print frequency, TRAIN.PRINT_FREQ steps at most, and the epoch's end; the Dassl engine: its
epoch's end). There the run saves a resumable checkpoint and stops; every rank of a torchrun run stops at
the same step, since they read the same all-reduced flags at the same steps.

What happens after the save is the previous handler's (`RunStopped.finish`): a Python handler that was bound
before (submitit binds SIGUSR2 to "checkpoint, requeue, exit" and SIGTERM to "ignore") is called with the
signal, so that submitit requeues from the saved state rather than from an arbitrary point of a step; when
it returns, or there was none, the process exits with 128 + the signal's number (143 for SIGTERM), as the
default handler's death would be reported by a shell.
"""
import logging
import signal
import sys

log = logging.getLogger(__name__)

DEFAULT_SIGNALS = ("SIGTERM", "SIGUSR1", "SIGUSR2")  # Slurm: SIGTERM at preemption / time limit; --signal


class RunStopped(Exception):
    """The run saved its state and stopped on `signum`; `finish()` hands the signal on."""

    def __init__(self, signum: int, previous, where: str):
        self.signum, self.previous = signum, previous
        name = signal.Signals(signum).name
        super().__init__(f"Stopped by {name} {where}; the run resumes from there when started again with "
                         f"the same command.")

    def finish(self):
        """Call the handler that was bound before ours (submitit's requeue), then exit 128 + signal."""
        if callable(self.previous):
            self.previous(self.signum, None)
        sys.exit(128 + self.signum)


def signal_numbers(names) -> list:
    """Signal numbers of `names` (TRAIN.STOP_SIGNALS: "SIGTERM", "SIGUSR1", ...); ValueError naming a bad one."""
    numbers = []
    for name in names:
        number = getattr(signal, str(name).upper(), None)
        if (not isinstance(number, signal.Signals) or not str(name).upper().startswith("SIG")
                or number in (signal.SIGKILL, signal.SIGSTOP)):  # these two cannot be caught
            raise ValueError(f"TRAIN.STOP_SIGNALS holds {name!r}, which is no signal a process can catch here; "
                             f"use names such as {', '.join(DEFAULT_SIGNALS)} (or [] for none).")
        numbers.append(number)
    return numbers


class StopSignals:
    """Bind `names` to "request a stop at the next check point" for the time of a `with` block (main thread
    only: elsewhere, as a signal can only be bound there, nothing is bound). The previous handlers are kept
    and bound again on exit."""

    def __init__(self, names, flags):
        self.numbers, self.flags = signal_numbers(names), flags
        self.previous = {}
        self.received = None  # the first signal received

    def __enter__(self):
        import threading
        if threading.current_thread() is not threading.main_thread():
            return self
        for number in self.numbers:
            self.previous[number] = signal.signal(number, self._handle)
        return self

    def __exit__(self, *exc):
        for number, handler in self.previous.items():
            signal.signal(number, handler if handler is not None else signal.SIG_DFL)
        self.previous = {}
        return False

    def _handle(self, signum, frame):
        if self.received is None:
            self.received = signum
        self.flags.request_stop()  # read at the next check point; nothing else happens in a handler

    def stopped(self, where: str) -> RunStopped:
        """The exception to raise once the state is saved (after the flags said stop). `where`: "after
        epoch 3, batch 7/10" and the like, for the log."""
        signum = self.received or signal.SIGTERM  # another rank got it: stop as it does
        previous = self.previous.get(signum)
        return RunStopped(signum, previous if callable(previous) else None, where)
