"""Writing files so that a failure names the file and leaves nothing half-written behind.

    atomic_write(path, lambda f: f.write(data))   # a temporary file in the same folder, renamed into place
    save_torch(obj, path)                          # torch.save, atomically
    with naming(path): ...                         # an OSError without a file name gets `path`

A write that fails (a full disk, a quota, a read-only file system) raises OSError with `filename` set, which
train.py prints as one line naming the file and the fix. `torch.save` into a file reports a full disk as
"RuntimeError: [enforce fail at inline_container.cc:...] unexpected pos ...": `save_torch` serialises into
memory first (checkpoints hold prompts: kilobytes to megabytes) and writes the bytes with Python's own I/O.
Temporary files are `.<name>.<random>.tmp` beside the target, removed on failure; a killed writer's are
removed by the next run in its output folder (restore.engine.checkpoint.remove_partial_writes).
"""
import contextlib
import errno
import io
import os
import tempfile

# What to do about a failed read or write, by errno (train.py and the project's tools print it).
OS_FIXES = {
    errno.ENOSPC: "Free disk space (or choose another --output-dir) and run again (it resumes from "
                  "the last saved epoch).",
    errno.EDQUOT: "Free space within your quota (or choose another --output-dir) and run again.",
    errno.EROFS: "The file system is read-only: choose a writable --output-dir.",
    errno.EACCES: "Permission denied: choose a folder you can write (--output-dir) or read (--root).",
    errno.EPERM: "Permission denied: choose a folder you can write (--output-dir) or read (--root).",
    errno.ENOENT: "Check the path.",
}


def describe_os_error(err: OSError) -> str:
    """One line for a failed read or write: the file, the system's reason, what to do."""
    target = f" {err.filename}" if err.filename else ""
    fix = OS_FIXES.get(err.errno, "")
    return f"Cannot write or read{target}: {err.strerror} (errno {err.errno}). {fix}".strip()


@contextlib.contextmanager
def naming(path):
    """Re-raise an OSError that names no file (a failed write does not) with `path` as its file name."""
    try:
        yield
    except OSError as err:
        if err.filename is None and err.errno:
            raise OSError(err.errno, err.strerror or os.strerror(err.errno), str(path)) from None
        raise


def atomic_write(path, write, text: bool = False) -> str:
    """Call `write(f)` on a temporary file beside `path` (binary, or text as UTF-8), then rename it to `path`:
    `path` is either the old file or the complete new one. Creates the folder. Returns `path`."""
    path = str(path)
    folder = os.path.dirname(os.path.abspath(path))
    with naming(path):
        os.makedirs(folder, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=folder, prefix=f".{os.path.basename(path)}.", suffix=".tmp")
        try:
            with os.fdopen(fd, "w" if text else "wb", **({"encoding": "utf-8"} if text else {})) as f:
                write(f)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, path)
        except BaseException:
            if os.path.exists(tmp):
                os.remove(tmp)
            raise
    return path


def torch_bytes(obj) -> bytes:
    """`torch.save(obj)` as bytes (the same bytes torch.save writes into a file)."""
    import torch
    buffer = io.BytesIO()
    torch.save(obj, buffer)
    return buffer.getvalue()


def save_torch(obj, path) -> str:
    """`torch.save(obj, path)`, atomically, a failed write naming `path`."""
    with naming(path):
        data = torch_bytes(obj)
    return atomic_write(path, lambda f: f.write(data))
