"""Dassl's `setup_logger` (docs/REPRODUCING.md section 5): stdout is teed into `<OUTPUT_DIR>/log.txt`; an existing
log file is never overwritten (the new one gets a `-YYYY-MM-DD-HH-MM-SS` suffix).

Unlike Dassl's Logger, the tee behaves like a terminal stream (isatty, encoding, fileno) and never
closes the real stdout; `close_logger()` puts the real stdout back.
"""
import os
import sys
import time


class Tee:
    def __init__(self, console, path):
        self.console = console
        self.path = path
        self.file = open(path, "w", encoding="utf-8")

    def write(self, msg):
        self.console.write(msg)
        if not self.file.closed:
            self.file.write(msg)
        return len(msg)

    def flush(self):
        self.console.flush()
        if not self.file.closed:
            self.file.flush()
            os.fsync(self.file.fileno())

    def isatty(self):
        return hasattr(self.console, "isatty") and self.console.isatty()

    def fileno(self):
        return self.console.fileno()

    @property
    def encoding(self):
        return getattr(self.console, "encoding", "utf-8")

    def close(self):
        if not self.file.closed:
            self.file.flush()
            self.file.close()


def log_path(output: str) -> str:
    """Where `setup_logger(output)` writes: output itself if it ends in .txt/.log, else
    output/log.txt; with a timestamp suffix when that file exists."""
    path = output if output.endswith((".txt", ".log")) else os.path.join(output, "log.txt")
    if os.path.exists(path):
        path += time.strftime("-%Y-%m-%d-%H-%M-%S")
    return path


def setup_logger(output):
    """Tee stdout into the log file of `output` (a folder or a .txt/.log file); returns the path."""
    if not output:
        return None
    close_logger()
    path = log_path(output)
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    sys.stdout = Tee(sys.stdout, path)
    return path


def close_logger():
    """Stop teeing: close the log file and restore the real stdout (a full or read-only disk that
    fails the last flush does not stop it)."""
    while isinstance(sys.stdout, Tee):
        tee = sys.stdout
        sys.stdout = tee.console
        try:
            tee.flush()
        except OSError:
            pass
        try:
            tee.close()
        except OSError:
            pass


def stdout_is_terminal() -> bool:
    out = sys.stdout
    return bool(getattr(out, "isatty", None)) and out.isatty()
