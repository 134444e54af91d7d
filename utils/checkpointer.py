"""The checkpoints of one run: find the newest that loads, save atomically, prune safely.

`<folder>/save_step_<N>.pth` files, each a dict of tensors and plain values. Only the process that
holds the run's lock (utils/run_folder.py) may save, prune or remove stale temporary files.
"""
from __future__ import annotations

import logging
import os
import re
from typing import Any

from utils.checkpoint import CheckpointError, UnsafeCheckpointError, read_checkpoint, save_checkpoint

CKPT_PATTERN = re.compile(r"^save_step_(\d+)\.pth$")
TMP_PATTERN = re.compile(r"^save_step_\d+\.pth\.tmp\.\d+$")
WHAT = "training checkpoint"


def checkpoints_newest_first(folder: str) -> list[tuple[int, str]]:
    """(step, path) of every `save_step_<N>.pth` in `folder`, newest first."""
    if not os.path.isdir(folder):
        return []
    found = [(int(m.group(1)), os.path.join(folder, name))
             for name in os.listdir(folder) if (m := CKPT_PATTERN.match(name))]
    return sorted(found, reverse=True)


def read_training_checkpoint(path: str, mmap: bool = False) -> dict[str, Any]:
    """A checkpoint written by this project's training (a dict with at least state_dict and step)."""
    ckpt = read_checkpoint(path, WHAT, mmap=mmap)
    if not isinstance(ckpt, dict) or not {"state_dict", "step"} <= set(ckpt):
        raise CheckpointError(f"{path} is not a training checkpoint of this project (no state_dict and step)")
    return ckpt


class Checkpointer:
    """Owns `folder`'s checkpoints; keeps the newest `keep` of those it has verified loadable."""

    def __init__(self, folder: str, keep: int, log: logging.Logger | None = None) -> None:
        if keep < 1:
            raise ValueError(f"TRAIN_MAX_KEEP_CKPT must be at least 1, got {keep}")
        self.folder, self.keep = folder, keep
        self.log = log or logging.getLogger(__name__)
        self._verified: dict[str, tuple[int, int]] = {}  # path → (size, mtime_ns) when verified
        self.last_good: str | None = None

    def remove_stale_temporaries(self) -> list[str]:
        """Delete half-written `*.tmp.<pid>` files left by a killed save (call with the run's lock held)."""
        if not os.path.isdir(self.folder):
            return []
        stale = [os.path.join(self.folder, n) for n in os.listdir(self.folder) if TMP_PATTERN.match(n)]
        for path in stale:
            os.remove(path)
            self.log.warning(f"removed {path}: an unfinished save of an earlier, killed run")
        return stale

    def load_newest(self) -> tuple[dict[str, Any], str] | None:
        """The newest checkpoint that loads, and its path; damaged ones are skipped with a warning.

        None when the folder holds no checkpoint; CheckpointError when it holds some and none
        loads, or when one can run code: such a folder needs the user's decision.
        """
        found = checkpoints_newest_first(self.folder)
        for step, path in found:
            try:
                ckpt = read_training_checkpoint(path)
            except UnsafeCheckpointError:
                raise
            except CheckpointError as err:
                self.log.warning(f"skipping {path}: {err}")
                continue
            self._mark_verified(path)
            self.last_good = path
            return ckpt, path
        if found:
            raise CheckpointError(f"none of the {len(found)} checkpoints in {self.folder} loads (newest: "
                                  f"{found[0][1]}); move them away, or pass --restart to set them aside "
                                  f"and train from the start")
        return None

    def save(self, step: int, payload: dict[str, Any]) -> str:
        """Write save_step_<step>.pth atomically, then prune; one-line CheckpointError on failure."""
        path = os.path.join(self.folder, f"save_step_{step}.pth")
        try:
            save_checkpoint(payload, path)
        except CheckpointError as err:
            last = self.last_good or "none yet"
            raise CheckpointError(f"{err}; the last good checkpoint is {last}; nothing was deleted") from None
        if not self.is_loadable(path):
            raise CheckpointError(f"{path} was written but does not load back; the last good checkpoint is "
                                  f"{self.last_good or 'none yet'}; nothing was deleted")
        self.last_good = path
        self.prune()
        return path

    def prune(self) -> list[str]:
        """Delete verified-loadable checkpoints beyond the newest `keep` of them; leave every other file."""
        good = [path for _, path in checkpoints_newest_first(self.folder) if self.is_loadable(path)]
        removed = good[self.keep:]
        for path in removed:
            os.remove(path)
            self._verified.pop(path, None)
        return removed

    def is_loadable(self, path: str) -> bool:
        """Whether `path` is a whole training checkpoint that loads safely (tensors mapped, not read)."""
        stat = os.stat(path)
        if self._verified.get(path) == (stat.st_size, stat.st_mtime_ns):
            return True
        try:
            read_training_checkpoint(path, mmap=True)
        except CheckpointError:
            return False
        self._verified[path] = (stat.st_size, stat.st_mtime_ns)
        return True

    def _mark_verified(self, path: str) -> None:
        stat = os.stat(path)
        self._verified[path] = (stat.st_size, stat.st_mtime_ns)
