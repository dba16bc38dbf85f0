"""TensorBoard event files (`<OUTPUT_DIR>/tensorboard/`, as Dassl writes them) whose failures name the file.

torch's SummaryWriter writes from a background thread, which prints its error as a raw traceback and hands it
to the next call of the main thread, an OSError that names no file (a full disk). `Board` wraps the calls both
engines make so that the error names the event file (restore.files.naming), which train.py prints as one
line; the writer thread's own traceback is not printed (its error is that one line).
"""
import glob
import os
import threading

from ..files import naming

WRITER_THREADS = "tensorboard.summary.writer.event_file_writer"  # the module of TensorBoard's writer thread


def _quiet_writer_threads():
    previous = threading.excepthook

    def hook(args):
        if type(args.thread).__module__ == WRITER_THREADS and issubclass(args.exc_type, OSError):
            return  # raised again in the main thread at its next call, naming the file
        previous(args)

    threading.excepthook = hook


_quiet_writer_threads()


class Board:
    """A SummaryWriter at `log_dir`: `add_scalar(tag, value, step)`, `close()`."""

    def __init__(self, log_dir: str):
        from torch.utils.tensorboard import SummaryWriter
        try:
            with naming(log_dir):
                os.makedirs(log_dir, exist_ok=True)
                self.writer = SummaryWriter(log_dir=log_dir)
        except OSError as err:
            events = sorted(glob.glob(os.path.join(log_dir, "events.out.tfevents.*")), key=os.path.getmtime)
            if events and err.filename == log_dir:
                raise OSError(err.errno, err.strerror, events[-1]) from None
            raise
        event_writer = getattr(self.writer.file_writer, "event_writer", None)
        self.path = getattr(event_writer, "_file_name", log_dir)  # the event file, where torch says

    def add_scalar(self, tag, value, step=None):
        with naming(self.path):
            self.writer.add_scalar(tag, value, step)

    def close(self):
        with naming(self.path):
            self.writer.close()
