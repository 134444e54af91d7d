"""One process at a time in a folder: an advisory lock file that the kernel releases when its holder dies."""
from __future__ import annotations

import contextlib
import datetime
import os
import socket

from utils.errors import FolderInUseError, UserError

try:
    import fcntl
except ImportError:  # Windows: no advisory locks; runs are then not guarded against each other
    fcntl = None


class FolderLock:
    """`<folder>/<name>` held with flock; its text names the holder (pid, host, start time)."""

    def __init__(self, folder: str, name: str, what: str) -> None:
        self.folder, self.path, self.what = folder, os.path.join(folder, name), what
        self._handle = None

    def acquire(self, hint: str) -> str | None:
        """Take the lock, or raise naming the process that holds it; returns a dead holder taken over.

        `hint` says what to do instead. A folder that cannot be created or written (read-only,
        full) is one error naming it, and leaves no lock file behind.
        """
        existed = os.path.exists(self.path)
        try:
            os.makedirs(self.folder, exist_ok=True)
            handle = open(self.path, "a+")
        except OSError as err:
            raise UserError(f"cannot use {self.what} {self.folder}: {err.strerror or err}") from None
        handle.seek(0)
        previous = handle.read().strip()
        if fcntl is not None:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                handle.close()
                raise FolderInUseError(f"another process ({previous or 'unknown'}) is using {self.what} "
                                       f"{self.folder}; {hint}") from None
        try:
            handle.seek(0)
            handle.truncate()
            handle.write(f"pid {os.getpid()} on {socket.gethostname()} since "
                         f"{datetime.datetime.now().isoformat(timespec='seconds')}\n")
            handle.flush()
            os.fsync(handle.fileno())
        except OSError as err:
            with contextlib.suppress(OSError):  # closing flushes the same unwritable buffer
                handle.close()
            if not existed:
                with contextlib.suppress(OSError):
                    os.remove(self.path)
            raise UserError(f"could not write {self.path}: {err.strerror or err}") from None
        self._handle = handle
        return previous or None

    def release(self, remove: bool = False) -> None:
        """Release the lock; its holder line is cleared (a line left there means a killed process).

        `remove` deletes the lock file too, so that a folder the process leaves holds nothing of it.
        """
        if self._handle is not None:
            with contextlib.suppress(OSError):
                self._handle.seek(0)
                self._handle.truncate()
                if remove:
                    os.remove(self.path)
            self._handle.close()
            self._handle = None
