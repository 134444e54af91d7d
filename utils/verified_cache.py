"""A cache of folders, each used only while a manifest written after its files vouches for them.

An entry `<cache>/<name>/` holds the files a build wrote and `manifest.json`, written last and
atomically: the key the entry was built for (e.g. a digest of the weights an export holds) and the
SHA-256 of every file. At each use the manifest must name the expected key and every file must
match its digest; an entry that is missing, unfinished, truncated, altered or built for another
key is rebuilt, with one warning saying why. A build is written beside the cache and renamed into
place, so an entry appears whole or not at all, also when two processes build it at once.
"""
from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
import tempfile
import time
from dataclasses import dataclass
from typing import Callable

from utils.errors import UserError
from utils.files import file_digest, write_json

MANIFEST = "manifest.json"
MANIFEST_FORMAT = 1


class CacheWriteError(UserError, OSError):
    """The cache folder cannot be written (read-only, full, not a folder), so an entry cannot be built."""


@dataclass(frozen=True)
class CacheEntry:
    """What an entry must be: its folder name, the key its manifest must name, the files it holds."""
    name: str
    key: str
    files: tuple[str, ...]
    what: str       # for messages, e.g. "the onnxruntime export of these weights"
    note: str = ""  # said when it is built, e.g. how long that takes


def problem_with(folder: str, entry: CacheEntry) -> str | None:
    """Why the entry at `folder` cannot be used as `entry`, or None when its manifest vouches for every file."""
    if not os.path.isdir(folder):
        return "not built yet"
    path = os.path.join(folder, MANIFEST)
    try:
        with open(path, "rb") as f:
            manifest = json.loads(f.read().decode("utf-8"))
    except FileNotFoundError:
        return f"{MANIFEST} is missing (an unfinished build, or files copied in by hand)"
    except (OSError, ValueError) as err:
        return f"{MANIFEST} is unreadable ({type(err).__name__})"
    if not isinstance(manifest, dict) or not isinstance(manifest.get("files"), dict):
        return f"{MANIFEST} is not a manifest of this cache"
    if manifest.get("key") != entry.key:
        return f"its {MANIFEST} names another key ({str(manifest.get('key'))[:16]}…): it was built from other inputs"
    listed = manifest["files"]
    if sorted(listed) != sorted(entry.files):
        return f"its {MANIFEST} lists {sorted(listed)}, not {sorted(entry.files)}"
    for name in entry.files:
        file = os.path.join(folder, name)
        if not os.path.isfile(file):
            return f"{name} is missing"
        if file_digest(file) != listed[name]:
            return f"{name} differs from its digest in {MANIFEST} (damaged, truncated or replaced)"
    return None


class VerifiedCache:
    """Entries under `root`; `get` returns an entry's folder, building it first when it cannot be used."""

    def __init__(self, root: str, log: logging.Logger) -> None:
        self.root, self.log = root, log

    def folder(self, entry: CacheEntry) -> str:
        """Where `entry` lives."""
        return os.path.join(self.root, entry.name)

    def get(self, entry: CacheEntry, build: Callable[[str], None], rebuild_reason: str | None = None) -> str:
        """The verified folder of `entry`; `build(folder)` writes its files into an empty folder when needed.

        `rebuild_reason` forces a rebuild (e.g. a runtime that could not open the files).
        """
        folder = self.folder(entry)
        reason = rebuild_reason or problem_with(folder, entry)
        if reason is None:
            return folder
        if reason == "not built yet":
            self.log.info(f"building {entry.what} in {folder}{entry.note}")
        else:
            self.log.warning(f"{folder}: {entry.what} cannot be used ({reason}); building it again{entry.note}")
        self._build(entry, build, folder)
        return folder

    def _build(self, entry: CacheEntry, build: Callable[[str], None], folder: str) -> None:
        try:
            os.makedirs(self.root, exist_ok=True)
            staging = tempfile.mkdtemp(prefix=f".build-{entry.name}-", dir=self.root)
            os.chmod(staging, 0o755)  # mkdtemp makes it private; the cache is shared like the checkpoints beside it
        except OSError as err:
            raise CacheWriteError(f"cannot build {entry.what} in {self.root}: {err.strerror or err}") from None
        try:
            build(staging)
            digests = {name: file_digest(os.path.join(staging, name)) for name in entry.files}
            write_json(os.path.join(staging, MANIFEST), {"format": MANIFEST_FORMAT, "key": entry.key,
                                                        "files": digests, "built": time.time()})
            self._place(staging, folder, entry)
        except OSError as err:
            raise CacheWriteError(f"cannot build {entry.what} in {self.root}: {err.strerror or err}") from None
        finally:
            shutil.rmtree(staging, ignore_errors=True)

    def _place(self, staging: str, folder: str, entry: CacheEntry) -> None:
        """Rename the finished build into place, first moving aside an entry that failed its check."""
        if os.path.lexists(folder):
            if problem_with(folder, entry) is None:
                return  # another process finished the same entry meanwhile: its files serve
            self._discard(folder, entry)
        try:
            os.replace(staging, folder)
        except OSError:
            if problem_with(folder, entry) is not None:  # not another process's good entry
                raise

    def _discard(self, folder: str, entry: CacheEntry) -> None:
        """Remove the files an entry is made of; a folder still holding anything else is renamed aside."""
        if os.path.islink(folder) or not os.path.isdir(folder):
            os.remove(folder)
            return
        for name in (*entry.files, MANIFEST):
            with contextlib.suppress(FileNotFoundError, IsADirectoryError):
                os.remove(os.path.join(folder, name))
        try:
            os.rmdir(folder)
        except OSError:
            aside = f"{folder}.set-aside-{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}"
            os.replace(folder, aside)
            self.log.warning(f"{folder} held files besides {entry.what}; moved to {aside}")
