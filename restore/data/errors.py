"""The one exception the dataset layer raises for problems a user can cause and fix."""
import os

from ..errors import UserError


class DatasetError(UserError):
    """A dataset problem the user can fix (missing folder, split file, image, unknown name ...).

    The message always names the path or config key at fault and says what to do about it.
    A UserError, hence a ValueError: callers catching ValueError (as Dassl's users do) still catch it.
    """


def require_file(path: str, what: str, fix: str) -> str:
    """Return `path` if it is a file, else raise DatasetError naming it, `what` it is and the `fix`."""
    if not os.path.isfile(path):
        raise DatasetError(f"{what} not found: {path}\n{fix}")
    return path


def require_dir(path: str, what: str, fix: str) -> str:
    """Return `path` if it is a directory, else raise DatasetError naming it, `what` it is and the `fix`."""
    if not os.path.isdir(path):
        raise DatasetError(f"{what} not found: {path}\n{fix}")
    return path
