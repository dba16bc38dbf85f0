"""Dassl's `setup_logger` (docs/REPRODUCING.md section 5): stdout is teed into `<OUTPUT_DIR>/log.txt`; an existing
log file is never overwritten (the new one gets a `-YYYY-MM-DD-HH-MM-SS` suffix).

Unlike Dassl's Logger, the tee behaves like a terminal stream (isatty, encoding, fileno) and never
closes the real stdout; `close_logger()` puts the real stdout back.
"""
import os
import sys
import time

from ..files import naming


class Tee:
    """The console and the log file. A write to the file that fails (a full disk) raises OSError naming
    the file, once: the file is then closed and the console alone gets the rest (the error line too)."""

    def __init__(self, console, path):
        self.console = console
        self.path = path
        with naming(path):
            self.file = open(path, "w", encoding="utf-8", buffering=1)  # line-buffered: `tail -f log.txt` follows

    def _to_file(self, operation):
        if self.file.closed:
            return
        try:
            with naming(self.path):
                operation(self.file)
        except OSError:
            try:
                self.file.close()
            except OSError:
                pass
            raise

    def write(self, msg):
        self.console.write(msg)
        self._to_file(lambda f: f.write(msg))
        return len(msg)

    def flush(self):
        self.console.flush()
        self._to_file(lambda f: (f.flush(), os.fsync(f.fileno())))

    def isatty(self):
        return hasattr(self.console, "isatty") and self.console.isatty()

    def fileno(self):
        return self.console.fileno()

    @property
    def encoding(self):
        return getattr(self.console, "encoding", "utf-8")

    def close(self):
        self._to_file(lambda f: (f.flush(), f.close()))


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
    """Stop teeing: flush and close the log file and restore the real stdout. Returns the OSError (naming
    the file) when the log's last lines could not be written (a full disk), else None."""
    failed = None
    while isinstance(sys.stdout, Tee):
        tee = sys.stdout
        sys.stdout = tee.console
        try:
            tee.flush()
            tee.close()
        except OSError as err:
            failed = failed or err
    return failed


def stdout_is_terminal() -> bool:
    out = sys.stdout
    return bool(getattr(out, "isatty", None)) and out.isatty()
