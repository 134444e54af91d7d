"""The run record: a training run's folder and its checkpoint files, written and read here only.

- `log/<exp>/run.lock`: held (flock) by the one process training in this folder; the kernel
  releases it when that process dies, so a lock left by a killed run is simply taken over.
- `run.json`: the settings that make the folder's checkpoints compatible (the fingerprint) and
  what the run was initialised from (path, step and content hash of a file or earlier stage).
- `summary.json`: the run's state for tools and tests (step, losses, timings, how it ended).
- `ckpt/save_step_<N>.pth`: the weights and the Trainer's training state (networks/checkpoints.py
  lays the file out), written atomically; the newest that loads is resumed, damaged ones are
  skipped, only verified-loadable ones are pruned. Only the process holding the lock saves,
  prunes or removes stale temporaries.
"""
from __future__ import annotations

import contextlib
import datetime
import json
import logging
import os
import re
import shutil
from typing import Any

from config import FINGERPRINT_KEYS, Config, settings_record
from networks.checkpoints import (
    LstaCheckpoint,
    checkpoint_file,
    checkpoints_newest_first,
    read_training,
    save_lsta,
)
from networks.lsta import LSTA
from utils.checkpoint import CheckpointError, UnsafeCheckpointError
from utils.errors import SettingError, UserError
from utils.files import file_digest, write_json
from utils.folder_lock import FolderLock

# Temporary files of a save a killed run left: utils.files.temporary_name's, and the older
# `save_step_<N>.pth.tmp.<pid>` of checkpoints written before it.
TMP_PATTERN = re.compile(r"^\.?save_step_\d+\.pth\.tmp\.\d+(\.\d+)?$")


def fingerprint(cfg: Config) -> dict[str, Any]:
    """The settings a run folder's checkpoints depend on (config.FINGERPRINT_KEYS)."""
    return {key: cfg.to_dict()[key] for key in FINGERPRINT_KEYS}


SCALARS, CURVES = "scalars.jsonl", "curves.png"  # the run's logged scalars, one JSON line per step; their plot


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

    def write_settings(self, cfg: Config) -> None:
        """config.json: the resolved settings with the command line, commit, torch version and device."""
        write_json(os.path.join(self.path, "config.json"), settings_record(cfg))

    def write_record(self, **fields: Any) -> None:
        """Update run.json with `fields` (fingerprint, initialised_from)."""
        record = self.read_record()
        record.update(fields)
        write_json(self.record_path, record)

    # ---- --restart ----
    def set_aside(self) -> str | None:
        """Move the folder's run (checkpoints, records, logs) into archive/<time>/; returns that folder."""
        names = [self.ckpt_dir, self.tensorboard_dir] + [os.path.join(self.path, n) for n in
                                                         ("run.json", "summary.json", "train.log", "config.json",
                                                          SCALARS, CURVES)]
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


class Checkpointer:
    """Owns `folder`'s checkpoints; keeps the newest `keep` of those it has verified loadable."""

    def __init__(self, folder: str, keep: int, log: logging.Logger | None = None) -> None:
        if keep < 1:
            raise SettingError(f"TRAIN_MAX_KEEP_CKPT must be at least 1, got {keep}")
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

    def load_newest(self) -> LstaCheckpoint | None:
        """The newest checkpoint that loads; damaged ones are skipped with a warning.

        None when the folder holds no checkpoint; CheckpointError when it holds some and none
        loads, or when one can run code: such a folder needs the user's decision.
        """
        found = checkpoints_newest_first(self.folder)
        for step, path in found:
            try:
                ckpt = read_training(path)
            except UnsafeCheckpointError:
                raise
            except CheckpointError as err:
                self.log.warning(f"skipping {path}: {err}")
                continue
            self._mark_verified(path)
            self.last_good = path
            return ckpt
        if found:
            raise CheckpointError(f"none of the {len(found)} checkpoints in {self.folder} loads (newest: "
                                  f"{found[0][1]}); move them away, or pass --restart to set them aside "
                                  f"and train from the start")
        return None

    def save(self, step: int, model: LSTA, config: dict[str, Any], training: dict[str, Any]) -> str:
        """Write save_step_<step>.pth atomically, then prune; one-line CheckpointError on failure."""
        path = checkpoint_file(self.folder, step)
        try:
            save_lsta(path, model, step, config, training)
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
        try:
            stat = os.stat(path)
        except OSError:  # gone, or a symbolic link that leads nowhere (a loop): not a checkpoint to keep or prune
            return False
        if self._verified.get(path) == (stat.st_size, stat.st_mtime_ns):
            return True
        try:
            read_training(path, mmap=True)
        except CheckpointError:
            return False
        self._verified[path] = (stat.st_size, stat.st_mtime_ns)
        return True

    def _mark_verified(self, path: str) -> None:
        stat = os.stat(path)
        self._verified[path] = (stat.st_size, stat.st_mtime_ns)


def pretrained_source(path: str) -> dict[str, Any]:
    """Where PRETRAIN_MODEL initialises from: a file, or the newest checkpoint of a finished run's ckpt folder."""
    step = None
    if os.path.isdir(path):
        for _, newest in checkpoints_newest_first(path):
            with contextlib.suppress(CheckpointError):
                ckpt = read_training(newest, mmap=True)
                break
        else:
            raise CheckpointError(f"PRETRAIN_MODEL folder {path} holds no loadable save_step_*.pth; "
                                  f"run the earlier stage first")
        step, total = ckpt.step, ckpt.config.get("TRAIN_TOTAL_STEPS", ckpt.step)
        if step < total:
            raise CheckpointError(f"PRETRAIN_MODEL {path}: that run is unfinished (it reached step {step} of "
                                  f"{total}, {newest}); finish it first by rerunning its command")
        path = newest
    elif not os.path.isfile(path):
        raise CheckpointError(f"PRETRAIN_MODEL not found: {path}; it initialises the encoder (see "
                              f"pretrained/README.md); to start from random weights pass --opts PRETRAIN False")
    return {"path": os.path.abspath(path), "step": step, "sha256": file_digest(path)}


def check_source_unchanged(cfg: Config, folder: "RunFolder", log: logging.Logger) -> None:
    """Refuse to go on when what this run was initialised from (e.g. stage 1) has changed since."""
    recorded = folder.read_record().get("initialised_from")
    if not (recorded and cfg.PRETRAIN and checkpoints_newest_first(cfg.DIR_CKPT)):
        return
    try:
        current = pretrained_source(cfg.PRETRAIN_MODEL)
    except CheckpointError as err:
        log.warning(f"cannot check what this run started from: {err}")
        return
    if (current["path"], current["sha256"]) != (recorded["path"], recorded["sha256"]):
        raise RunFolderError(f"{cfg.PRETRAIN_MODEL} changed since this run started from it (then {recorded['path']}"
                             f" at step {recorded['step']}, now {current['path']} at step {current['step']}); "
                             f"pass --restart to set this run aside and start again from the new one")
