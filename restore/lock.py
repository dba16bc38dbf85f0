"""One run per output folder: a lock file that survives kills, shared file systems and requeued jobs.

    with output_lock(cfg.OUTPUT_DIR):       # UserError at once when another live run holds the folder
        ...train...

The lock is `<folder>/.restore.lock`, a JSON record {pid, host, started, job, process_start}. It is created atomically
(`os.link` of a complete temporary file, which fails when the lock exists; `O_CREAT|O_EXCL` where hard
links are not supported), so it works on NFS and Lustre where `flock` may not. A lock whose owner is gone
is taken over:

- same host and its pid is no longer running, or now names another process (a killed run);
- same cluster job (SLURM_ARRAY_JOB_ID + SLURM_ARRAY_TASK_ID, else SLURM_JOB_ID) as this process: the job
  was requeued, possibly onto another node.

A lock held by a run on another host (outside this job) is never guessed dead: the message says how to
remove it. Under several processes (torchrun: RANK / WORLD_SIZE), rank 0 takes the lock and, when
torch.distributed is initialised, broadcasts the outcome so that every rank stops or goes on together.
"""
import json
import os
import socket
import time
from contextlib import contextmanager

from .errors import UserError
from .files import naming

LOCK_NAME = ".restore.lock"


def cluster_job() -> str:
    """This process's cluster job ("slurm:<array job>_<task>" or "slurm:<job>"), "" outside one."""
    env = os.environ
    if env.get("SLURM_ARRAY_JOB_ID") and env.get("SLURM_ARRAY_TASK_ID"):
        return f"slurm:{env['SLURM_ARRAY_JOB_ID']}_{env['SLURM_ARRAY_TASK_ID']}"
    return f"slurm:{env['SLURM_JOB_ID']}" if env.get("SLURM_JOB_ID") else ""


def process_start(pid):
    """The kernel's start time of process `pid` (Linux: /proc/<pid>/stat field 22), None if unknown.
    Tells a reused pid from the process that wrote a lock."""
    try:
        with open(f"/proc/{int(pid)}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[19]
    except (OSError, ValueError, IndexError, TypeError):
        return None


def owner_record() -> dict:
    return {"pid": os.getpid(), "host": socket.gethostname(), "started": time.strftime("%Y-%m-%d %H:%M:%S"),
            "job": cluster_job(), "process_start": process_start(os.getpid())}


def pid_running(pid) -> bool:
    """Whether a process with this id exists on this host."""
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by another user
        return True
    except (OSError, ValueError, TypeError):
        return False
    return True


def owner_gone(record: dict) -> bool:
    """True when the run that wrote `record` can no longer be running, or is this job requeued."""
    if record.get("job") and record.get("job") == cluster_job():
        return True
    if record.get("host") == socket.gethostname():
        pid = record.get("pid")
        if not pid_running(pid):
            return True
        started = record.get("process_start")  # the pid may have been reused since
        return started is not None and process_start(pid) not in (None, started)
    return False


def held(folder) -> bool:
    """Whether `folder` is locked by a run that may still be running (its lock exists and its owner is
    not known to be gone): what a sweep's progress counts as running, here or on other nodes."""
    _, record = _read(os.path.join(folder, LOCK_NAME))
    return record is not None and not owner_gone(record)


def describe(record: dict) -> str:
    job = f", job {record['job']}" if record.get("job") else ""
    return f"pid {record.get('pid')} on {record.get('host')}{job}, started {record.get('started')}"


def _read(path):
    """(text, record) of a lock file: record {} when it is not a record (an interrupted O_EXCL write),
    (None, None) when the file is gone."""
    try:
        with open(path) as f:
            text = f.read()
    except FileNotFoundError:
        return None, None
    try:
        record = json.loads(text)
    except ValueError:
        return text, {}
    return text, (record if isinstance(record, dict) else {})


def _create(path, text) -> bool:
    """Atomically create `path` holding `text`; False when it already exists. A failed write (a full disk)
    raises OSError naming `path`."""
    tmp = f"{path}.{socket.gethostname()}.{os.getpid()}.tmp"
    try:
        with naming(path):
            with open(tmp, "w") as f:
                f.write(text)
            try:
                os.link(tmp, path)  # atomic, and fails if `path` exists, on NFS too
                return True
            except FileExistsError:
                return False
            except OSError:  # a file system without hard links
                try:
                    fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
                except FileExistsError:
                    return False
                with os.fdopen(fd, "w") as f:
                    f.write(text)
                return True
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def _remove_stale(path, seen: str) -> None:
    """Remove the lock file if it still holds `seen` (its text when judged stale): rename it aside first,
    so that of two runs taking over at once only one removes it, and a fresh lock is never removed."""
    aside = f"{path}.stale.{socket.gethostname()}.{os.getpid()}"
    try:
        os.rename(path, aside)
    except FileNotFoundError:
        return
    with open(aside) as f:
        taken = f.read()
    if taken != seen:  # another run locked the folder meanwhile: put its lock back
        try:
            os.link(aside, path)
        except OSError:
            pass
    os.remove(aside)


class OutputLock:
    """The lock of one output folder (see the module docstring); `acquire()` / `release()`."""

    def __init__(self, folder: str):
        self.folder = folder
        self.path = os.path.join(folder, LOCK_NAME)
        self.text = None  # our record, once held
        self.notes = []  # what acquiring took over, for the run's log

    def acquire(self) -> None:
        os.makedirs(self.folder, exist_ok=True)
        text = json.dumps(owner_record())
        for _ in range(5):
            if _create(self.path, text):
                self.text = text
                return
            seen, record = _read(self.path)
            if record is None:  # released meanwhile
                continue
            if record == {} and time.time() - _mtime(self.path) < 60:
                raise UserError(f"The output folder {self.folder} is being locked by another run right now "
                                f"({self.path}): use another --output-dir, or retry in a minute.")
            if record and not owner_gone(record):
                raise UserError(
                    f"Another run is writing into {self.folder} ({describe(record)}): wait for it or use "
                    f"another --output-dir. If that run is dead, delete {self.path}.")
            self.notes.append(f"Note: taking over the lock of {self.folder} from a run that is gone "
                              f"({describe(record) if record else 'unreadable lock'})")
            _remove_stale(self.path, seen)
        raise UserError(f"Could not lock {self.folder}: {self.path} keeps changing. Retry, or use another "
                        "--output-dir.")

    def release(self) -> None:
        """Remove the lock if it is still ours."""
        if self.text is None:
            return
        try:
            with open(self.path) as f:
                ours = f.read() == self.text
            if ours:
                os.remove(self.path)
        except OSError:
            pass
        self.text = None


def _mtime(path) -> float:
    try:
        return os.path.getmtime(path)
    except OSError:
        return 0.0


def process_rank() -> int:
    """This process's rank under torchrun / torch.distributed (0 when alone)."""
    try:
        import torch.distributed as dist
        if dist.is_available() and dist.is_initialized():
            return dist.get_rank()
    except ImportError:
        pass
    return int(os.environ.get("RANK", "0") or 0)


def share_outcome(error):
    """Broadcast rank 0's outcome (None or an error message) to every rank when torch.distributed is
    initialised; returns it. Without it, each rank keeps its own (ranks > 0 have none)."""
    try:
        import torch.distributed as dist
    except ImportError:
        return error
    if not (dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1):
        return error
    box = [error]
    dist.broadcast_object_list(box, src=0)
    return box[0]


@contextmanager
def output_lock(folder: str):
    """Hold the lock of `folder` for the block (rank 0 only; every rank learns rank 0's outcome).
    Released on normal exit and on error; a killed run's lock is taken over as described above."""
    lock = OutputLock(folder) if process_rank() == 0 else None
    error = None
    if lock is not None:
        try:
            lock.acquire()
        except UserError as err:
            error = str(err)
        except OSError as err:  # e.g. a read-only or full disk; the other ranks must hear it too
            error = f"Cannot lock the output folder {folder} ({err}): choose a writable --output-dir."
    error = share_outcome(error)
    if error is not None:
        raise UserError(error)
    try:
        yield lock
    finally:
        if lock is not None:
            lock.release()
