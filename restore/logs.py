"""The project's console: every module logs through `logging` (a logger per module, `__name__`), and one
handler on the project's top-level loggers writes the records to whatever `sys.stdout` is when a record is
written. So they reach `<OUTPUT_DIR>/log.txt` through the tee that train.py's `setup_logger` (and Dassl's,
which replaces sys.stdout after the library is imported) puts there, line for line as `print` did, and a
test's captured stdout or `contextlib.redirect_stdout` catches them too.

- Message only ("%(message)s"): a record prints as the line it says. Notes and warnings are WARNING
  records ("Note: ...", "Warning: ..."), everything else INFO.
- Under torchrun (WORLD_SIZE > 1) only rank 0 writes INFO and WARNING records (a filter, read from the
  RANK that torchrun sets, so it holds before the process group exists); ERROR records pass on every rank,
  prefixed "[rank N] ".
- ERROR records go to stderr, and into the log file too when sys.stdout is a tee (ours or Dassl's).
- A failed write (a full disk under log.txt) raises in the caller, as print did, instead of logging's
  "--- Logging error ---" report.
- Under torchrun, a rank that stops on an error also leaves its line in the output folder
  (`leave_error`); when the others then fail in a collective, rank 0 copies it into log.txt and every
  rank exits without a traceback of its own (`stopped_by_peer`): the failing rank's line is the last one
  printed, and log.txt ends with it.

Dassl's data package disables logging below ERROR when imported: the project imports Dassl under
`kept_enabled()`, which undoes that.

A Python-API user silences or redirects it with the logging module:

    logging.getLogger("restore").setLevel(logging.WARNING)   # notes, warnings and errors only
    logging.getLogger("restore").setLevel(logging.CRITICAL + 1)   # nothing
    restore.logs.use_logging_config()   # no console handler: records propagate to the root logger's handlers
"""
import contextlib
import glob
import logging
import os
import sys

# The project's top-level loggers: the library, the Dassl adapter (trainers/), Dassl's dataset classes
# (datasets/) and train.py.
PROJECT_LOGGERS = ("restore", "trainers", "datasets", "train")


def process_rank() -> int:
    """This process's rank under torchrun (its RANK variable), 0 alone."""
    return int(os.environ.get("RANK", "").strip() or 0)


def several_processes() -> bool:
    return int(os.environ.get("WORLD_SIZE", "").strip() or 1) > 1


class RankFilter(logging.Filter):
    """Rank 0 (or a single process) keeps every record; other ranks keep ERROR records only."""

    def filter(self, record):
        return record.levelno >= logging.ERROR or process_rank() == 0


def log_file_of(stream):
    """The open log file behind a tee of stdout (restore.engine.logger.Tee, Dassl's Logger), or None."""
    file = getattr(stream, "file", None)
    return file if file is not None and hasattr(stream, "console") and not file.closed else None


class ConsoleHandler(logging.Handler):
    """Writes each record's message to the current sys.stdout (ERROR and above: sys.stderr and the log
    file), around any tqdm progress bar."""

    def __init__(self):
        super().__init__(level=logging.NOTSET)
        self.setFormatter(logging.Formatter("%(message)s"))
        self.addFilter(RankFilter())

    def format(self, record):
        text = super().format(record)
        if record.levelno >= logging.ERROR and several_processes():
            text = f"[rank {process_rank()}] {text}"
        return text

    def emit(self, record):
        # No try/except: a write that fails raises in the caller (logging would print and go on).
        from tqdm import tqdm
        text = self.format(record)
        if record.levelno < logging.ERROR:
            tqdm.write(text, file=sys.stdout)  # clears and redraws a progress bar, as print through it
            return
        log_file = log_file_of(sys.stdout)
        if log_file is not None:
            try:
                sys.stdout.flush()
                log_file.write(text + "\n")
                log_file.flush()
            except OSError:  # the console below still gets the message
                pass
        print(text, file=sys.stderr, flush=True)


HANDLER = ConsoleHandler()


def error_file(folder: str, rank: int) -> str:
    """Where rank `rank` leaves its error line: `<OUTPUT_DIR>/.rank<N>.error`."""
    return os.path.join(folder, f".rank{rank}.error")


def leave_error(folder: str, message: str) -> str:
    """Under torchrun, write this rank's error line (tagged as HANDLER prints it) to its error file in
    the output folder, for the ranks that fail next in a collective (`stopped_by_peer`); returns its
    path. Nothing ("") alone, without a folder, or when the folder cannot be written (the console has
    the line anyway)."""
    if not (several_processes() and folder and os.path.isdir(folder)):
        return ""
    path = error_file(folder, process_rank())
    try:
        with open(path, "w", encoding="utf-8") as f:
            f.write(f"[rank {process_rank()}] {message}\n")
    except OSError:
        return ""
    return path


def stopped_by_peer(folder: str, since: float) -> bool:
    """Under torchrun, after this rank failed with an unexpected error (a collective whose peer is gone):
    True when another rank left an error line in `folder` at or after `since` (seconds since the epoch:
    this run's start), in which case rank 0 appends those lines to log.txt (through the tee that
    sys.stdout is) and removes their files. The caller then exits quietly: the failing rank has printed
    the line. False otherwise (the error is this rank's own: let it raise)."""
    if not (several_processes() and folder and os.path.isdir(folder)):
        return False
    mine = error_file(folder, process_rank())
    lines, files = [], []
    for path in sorted(glob.glob(os.path.join(glob.escape(folder), ".rank*.error"))):
        try:
            if path == mine or os.path.getmtime(path) < since:
                continue
            with open(path, encoding="utf-8") as f:
                lines.append(f.read().rstrip("\n"))
            files.append(path)
        except OSError:  # another rank removed it meanwhile
            continue
    if not lines:
        return False
    log_file = log_file_of(sys.stdout)
    if process_rank() == 0:
        if log_file is not None:
            sys.stdout.flush()
            log_file.write("\n".join(lines) + "\n")
            log_file.flush()
        for path in files:
            with contextlib.suppress(OSError):
                os.remove(path)
    return True


def install() -> None:
    """Put HANDLER on the project's loggers (INFO and above, not propagated to the root logger, so that an
    application's own logging setup does not print them twice). Idempotent; done on import."""
    for name in PROJECT_LOGGERS:
        logger = logging.getLogger(name)
        if HANDLER not in logger.handlers:
            logger.addHandler(HANDLER)
        if logger.level == logging.NOTSET:
            logger.setLevel(logging.INFO)
        logger.propagate = False


def use_logging_config() -> None:
    """Hand the project's records to the application's logging configuration: remove the console handler
    and let them propagate to the root logger (levels stay as set)."""
    for name in PROJECT_LOGGERS:
        logger = logging.getLogger(name)
        logger.removeHandler(HANDLER)
        logger.propagate = True


@contextlib.contextmanager
def kept_enabled():
    """Import Dassl under this block: its data package calls `logging.disable(logging.WARNING)` when imported
    (dassl/data/datasets/dg/wilds/wilds_base.py, to quiet wilds), which would drop every INFO and WARNING
    record of every logger, the project's log lines included. The disable level is put back as it was."""
    before = logging.root.manager.disable
    try:
        yield
    finally:
        if logging.root.manager.disable != before:
            logging.disable(before)


install()
