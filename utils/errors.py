"""The errors a user can fix (a setting, a file, the data), and the one line they see for them.

Entry points print a `UserError` (and an `OSError`: a full disk, a read-only folder) as one line
and exit 1; every other exception is a bug and keeps its traceback.
"""
from __future__ import annotations


class UserError(Exception):
    """Something the user can fix: a setting, a file, the data, another run in the way."""


class SettingError(UserError, ValueError):
    """A setting or command-line argument that cannot work."""


class DataError(UserError, ValueError):
    """Data that cannot be used as it is: damaged, inconsistent, too small, a bad name."""


class MissingFileError(UserError, FileNotFoundError):
    """A file or folder the run needs is not there."""


class FolderInUseError(UserError, FileExistsError):
    """A folder that belongs to another run, or holds what this run must not overwrite."""


def user_message(err: BaseException) -> str:
    """`err`'s message on one line; for an error re-raised from a DataLoader worker, the worker's own message.

    torch re-raises a worker's exception in the main process with the worker's whole traceback
    as its message; the useful part (the file and the cause) is its last line.
    """
    text = str(err).strip()
    if "Original Traceback" in text:
        last = [line for line in text.splitlines() if line.strip()][-1].strip()
        text = last.split(": ", 1)[1] if ": " in last else last
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return "; ".join(lines) if lines else type(err).__name__


def out_of_memory_message(err: BaseException, advice: str) -> str:
    """One line for an out-of-memory error, with what to lower."""
    return f"out of memory ({user_message(err).split(';')[0][:200]}); {advice}"
