"""Small file helpers: the one atomic writer, JSON records, content digests."""
from __future__ import annotations

import contextlib
import hashlib
import json
import os
import threading
from typing import Any

from utils.errors import DataError


def temporary_name(path: str) -> str:
    """The temporary file `atomic_write` writes before renaming: hidden, in the same folder, per process and thread."""
    folder, name = os.path.split(path)
    return os.path.join(folder, f".{name}.tmp.{os.getpid()}.{threading.get_ident()}")


def atomic_write(path: str, data: bytes | memoryview, durable: bool = False) -> None:
    """Write `data` to a temporary file in the same folder, then rename it over `path`.

    Readers never see half a file, and a failed write (full disk) leaves no half or empty file
    under the final name: the temporary file is removed and the OSError raised, naming `path`.
    `durable` also syncs the file and the rename to disk (checkpoints and records survive a power
    cut; masks need not).
    """
    folder = os.path.dirname(path) or "."
    tmp = temporary_name(path)
    try:
        os.makedirs(folder, exist_ok=True)
        with open(tmp, "wb") as f:
            f.write(data)
            if durable:
                f.flush()
                os.fsync(f.fileno())
        os.replace(tmp, path)
        if durable:
            _fsync_folder(folder)
    except OSError as err:
        raise OSError(err.errno, f"could not write {path}: {err.strerror or err}") from None
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.remove(tmp)


def _fsync_folder(folder: str) -> None:
    # The rename itself must reach the disk, or a power cut could bring back the old file list.
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return  # not possible on every platform
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_json(path: str, data: Any) -> None:
    """Write `data` as JSON, atomically and durably."""
    atomic_write(path, json.dumps(data, indent=2, sort_keys=True).encode(), durable=True)


def read_text_lines(path: str, what: str) -> list[str]:
    """The lines of a UTF-8 text file (a split file, a list); one error naming the file when it is not UTF-8."""
    with open(path, "rb") as f:
        data = f.read()
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as err:
        raise DataError(f"{what} {path} is not UTF-8 text (byte {err.start}: {data[err.start:err.start + 1]!r}); "
                        f"save it as UTF-8") from None
    return text.splitlines()


def file_digest(path: str) -> str:
    """SHA-256 of a file's content."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
