"""A training run's folder, `log/<exp>/`: one run at a time, compatible settings, a summary.

- `run.lock`: held (flock) by the one process training in this folder; the kernel releases it
  when that process dies, so a lock left by a killed run is simply taken over.
- `run.json`: the settings that make the folder's checkpoints compatible (the fingerprint) and
  what the run was initialised from (path, step and content hash of a file or earlier stage).
- `summary.json`: the run's state for tools and tests (step, losses, timings, how it ended).
"""
from __future__ import annotations

import datetime
import json
import os
import shutil
from typing import Any

from utils.errors import UserError
from utils.files import write_json
from utils.folder_lock import FolderLock

class RunFolderError(UserError, RuntimeError):
    """The run folder is in use by another run, or holds a run with incompatible settings."""


class RunFolder:
    """`path` (DIR_RESULT) with its checkpoint and TensorBoard folders, which may lie elsewhere."""

    def __init__(self, path: str, ckpt_dir: str, tensorboard_dir: str) -> None:
        self.path, self.ckpt_dir, self.tensorboard_dir = path, ckpt_dir, tensorboard_dir
        self.record_path = os.path.join(path, "run.json")
        self.summary_path = os.path.join(path, "summary.json")
        self._lock = FolderLock(path, "run.lock", "run folder")
        self.lock_path = self._lock.path

    # ---- one run at a time ----
    def lock(self) -> str | None:
        """Take the folder's lock, or raise naming the run that holds it; returns a dead holder taken over."""
        try:
            return self._lock.acquire("wait for it to end, or train under another --exp_name")
        except UserError as err:
            raise RunFolderError(str(err)) from None

    def unlock(self) -> None:
        """Release the lock; its holder line is cleared, so a line left there means a killed run."""
        self._lock.release()

    # ---- compatible settings ----
    def read_record(self) -> dict[str, Any]:
        """run.json, or {} when the folder has none."""
        if not os.path.isfile(self.record_path):
            return {}
        try:
            with open(self.record_path) as f:
                return json.load(f)
        except (OSError, ValueError) as err:
            raise RunFolderError(f"{self.record_path} is unreadable ({err}); move it away to continue") from None

    def check_settings(self, fingerprint: dict[str, Any], has_checkpoints: bool) -> None:
        """Raise when the folder's checkpoints were made under settings that differ from `fingerprint`."""
        recorded = self.read_record().get("fingerprint")
        if recorded is None or not has_checkpoints:
            return
        differing = [k for k in sorted(set(recorded) | set(fingerprint)) if recorded.get(k) != fingerprint.get(k)]
        if differing:
            changes = ", ".join(f"{k} {recorded.get(k)!r} → {fingerprint.get(k)!r}" for k in differing)
            raise RunFolderError(f"{self.path} holds checkpoints of a run with other settings ({changes}); "
                                 f"train under another --exp_name, or pass --restart to set that run aside")

    def write_record(self, **fields: Any) -> None:
        """Update run.json with `fields` (fingerprint, initialised_from)."""
        record = self.read_record()
        record.update(fields)
        write_json(self.record_path, record)

    # ---- --restart ----
    def set_aside(self) -> str | None:
        """Move the folder's run (checkpoints, records, logs) into archive/<time>/; returns that folder."""
        names = [self.ckpt_dir, self.tensorboard_dir] + [os.path.join(self.path, n) for n in
                                                         ("run.json", "summary.json", "train.log", "config.json")]
        present = [p for p in names if os.path.exists(p)]
        if not present:
            return None
        archive = os.path.join(self.path, "archive", datetime.datetime.now().strftime("%Y%m%d-%H%M%S-%f"))
        os.makedirs(archive)
        for source in present:
            shutil.move(source, os.path.join(archive, os.path.basename(source.rstrip(os.sep))))
        return archive

    # ---- summary ----
    def write_summary(self, summary: dict[str, Any]) -> bool:
        """Write summary.json atomically; False when the disk refuses (the run is failing anyway)."""
        try:
            write_json(self.summary_path, summary)
            return True
        except OSError:
            return False
