"""A results folder owned by one evaluation: a lock, a record, a list of the files it wrote.

- `eval.lock`: held by the evaluating process (and removed when it ends); a second evaluation
  into the folder is refused, naming the holder (a lock left by a killed process is taken over).
- `eval.json`: written before any result (checkpoint, its SHA-256, benchmark, settings, status
  `running`) and marked `complete` at the end.
- `written.txt`: one JSON object per line: `{"file": <path>}` for each file the evaluation wrote,
  and `{"done": <sequence>}` once a sequence's files are all on disk. JSON escapes every character
  a name may hold, so no name can add a line (folders written before read as `file <path>` lines).

`--overwrite` deletes exactly the files `written.txt` lists (never a training run's folder, never
a file the project did not write), and only once the weights have loaded; `--resume` keeps the
sequences marked done whose masks are all present and readable, and redoes the rest.
"""
from __future__ import annotations

import contextlib
import json
import os
import time
from typing import Any

from utils.errors import FolderInUseError, UserError
from utils.files import write_json
from utils.folder_lock import FolderLock
from utils.image_io import read_mask

RECORD, MANIFEST, LOCK = "eval.json", "written.txt", "eval.lock"
TRAINING_FILES = ("run.json", "run.lock", "ckpt", "train.log")


def refuse_run_folder(path: str) -> None:
    """Refuse `path` as a place to write results when it is a training run's folder."""
    for name in TRAINING_FILES:
        if os.path.exists(os.path.join(path, name)):
            raise FolderInUseError(f"{path} is a training run's folder (it holds {name}); evaluation never writes "
                                   f"there: choose another --out")


def _manifest_entry(line: str) -> tuple[str | None, str | None]:
    """(kind, value) of one written.txt line: a JSON object, or the `kind value` lines of earlier versions."""
    line = line.rstrip("\n")
    if line.startswith("{"):
        try:
            entry = json.loads(line)
        except ValueError:
            return None, None  # a line cut short by a crash
        if isinstance(entry, dict) and len(entry) == 1:
            kind, value = next(iter(entry.items()))
            return kind, value if isinstance(value, str) else None
        return None, None
    kind, _, value = line.partition(" ")
    return kind, value


def inside(path: str, folder: str) -> bool:
    """Whether `path` is `folder` or lies below it (symbolic links resolved)."""
    path, folder = os.path.realpath(path), os.path.realpath(folder)
    return path == folder or path.startswith(folder.rstrip(os.sep) + os.sep)


class ResultsFolder:
    """`path`, where one evaluation writes; `sources` are the folders it reads frames and ground truth from."""

    def __init__(self, path: str, sources: list[str]) -> None:
        self.path, self.sources = path, [s for s in sources if s]
        self.lock = FolderLock(path, LOCK, "results folder")
        self.record: dict[str, Any] = {}
        self.done: set[str] = set()

    def check_place(self) -> None:
        """Refuse a folder that is a training run's, or that overlaps what the evaluation reads."""
        refuse_run_folder(self.path)
        for source in self.sources:
            if inside(self.path, source) or inside(source, self.path):
                raise FolderInUseError(f"results folder {self.path} overlaps {source}, which this evaluation reads "
                                       f"frames or ground truth from: choose an --out outside it")

    def open(self, mode: str, record: dict[str, Any], sequences_of: dict[str, list[str]] | None = None) -> set[str]:
        """Take the folder for this evaluation (`mode`: new, overwrite or resume); the sequences already done.

        `sequences_of` maps a sequence to its mask files (for --resume's check). Call it once the
        weights have loaded: --overwrite deletes the earlier results here.
        """
        self.check_place()
        self.lock.acquire("wait for it to end, or choose another --out")
        try:
            earlier = self.check_mode(mode)
            present = [n for n in os.listdir(self.path) if n != LOCK]
            if mode == "overwrite" and present:
                self._delete_written()
            elif mode == "resume" and earlier is not None:
                self._check_same_run(earlier, record)
                self.done = self._verified_done(sequences_of or {})
            elif mode == "resume":
                self.done = set()
            self.record = {**record, "status": "running", "started": time.time(), "pid": os.getpid(),
                           "resumed_sequences": sorted(self.done)}
            self._write_record()
            return set(self.done)
        except BaseException:
            self.lock.release(remove=True)
            raise

    def check_mode(self, mode: str) -> dict[str, Any] | None:
        """Refuse what `open(mode)` would refuse, before any model work; the earlier evaluation's record, if any.

        `new` refuses a folder holding anything; every mode refuses files no evaluation recorded.
        """
        present = [n for n in os.listdir(self.path) if n != LOCK] if os.path.isdir(self.path) else []
        if not present:
            return None
        earlier = self._read_record()
        if mode == "new":
            raise FolderInUseError(self._refusal(earlier))
        if earlier is None:
            raise FolderInUseError(f"results folder {self.path} holds files that no evaluation of this project "
                                   f"recorded ({RECORD} is missing): nothing is deleted; choose another --out")
        return earlier

    def join(self, done: set[str]) -> None:
        """For the other ranks of a sharded evaluation: write into the folder rank 0 has taken."""
        self.done = set(done)

    def add_files(self, paths: list[str], done: str | None = None) -> None:
        """Record files this evaluation wrote (every one must lie inside the folder), then `done <sequence>`."""
        lines = []
        for path in paths:
            if not inside(path, self.path):
                raise UserError(f"refusing to record {path}: it lies outside the results folder {self.path}")
            lines.append(json.dumps({"file": os.path.relpath(path, self.path)}) + "\n")
        if done is not None:
            lines.append(json.dumps({"done": done}) + "\n")
            self.done.add(done)
        path = os.path.join(self.path, MANIFEST)
        try:  # one write per call: lines of several ranks appending at once do not interleave
            with open(path, "a") as f:
                f.write("".join(lines))
                f.flush()
                os.fsync(f.fileno())
        except OSError as err:
            raise UserError(f"could not write {path}: {err.strerror or err}") from None

    def complete(self, **fields: Any) -> None:
        """Mark the evaluation complete and release the folder."""
        self.record.update(fields, status="complete", finished=time.time())
        self._write_record()
        self.close()

    def close(self) -> None:
        """Release the folder (an unfinished evaluation stays `running` in its record: --resume finishes it)."""
        self.lock.release(remove=True)

    # ---- internals ----
    def _write_record(self) -> None:
        path = os.path.join(self.path, RECORD)
        try:
            write_json(path, self.record)
        except OSError as err:
            raise UserError(f"could not write {path}: {err.strerror or err}") from None

    def _read_record(self) -> dict[str, Any] | None:
        path = os.path.join(self.path, RECORD)
        if not os.path.isfile(path):
            return None
        try:
            with open(path) as f:
                return json.load(f)
        except (OSError, ValueError) as err:
            raise UserError(f"{path} is unreadable ({err}); choose another --out") from None

    def _refusal(self, earlier: dict[str, Any] | None) -> str:
        if earlier is None:
            return (f"results folder {self.path} already holds files that are not an evaluation of this project: "
                    f"choose another --out")
        if earlier.get("status") == "complete":
            return (f"results folder {self.path} holds a finished evaluation of {earlier.get('checkpoint')}; choose "
                    f"another --out, or pass --overwrite to replace it")
        return (f"results folder {self.path} holds an unfinished evaluation of {earlier.get('checkpoint')} "
                f"({len(self._manifest()[1])} sequences done): pass --resume to finish it, or --overwrite to redo it")

    def _manifest(self) -> tuple[list[str], set[str]]:
        path = os.path.join(self.path, MANIFEST)
        files, done = [], set()
        if os.path.isfile(path):
            with open(path, encoding="utf-8", errors="replace") as f:
                for line in f:
                    kind, value = _manifest_entry(line)
                    if kind == "file" and value:
                        files.append(value)
                    elif kind == "done" and value:
                        done.add(value)
        return files, done

    def _delete_written(self) -> None:
        files, _ = self._manifest()
        folders = set()
        for relative in files:
            path = os.path.join(self.path, relative)
            if not inside(path, self.path):
                continue  # a damaged manifest must not delete outside the folder
            with contextlib.suppress(FileNotFoundError):
                os.remove(path)
            folders.add(os.path.dirname(path))
        for name in (RECORD, MANIFEST):
            with contextlib.suppress(FileNotFoundError):
                os.remove(os.path.join(self.path, name))
        for folder in sorted(folders, key=len, reverse=True):  # empty folders it made, innermost first
            while inside(folder, self.path) and os.path.realpath(folder) != os.path.realpath(self.path):
                try:
                    os.rmdir(folder)
                except OSError:
                    break
                folder = os.path.dirname(folder)

    def _check_same_run(self, earlier: dict[str, Any], record: dict[str, Any]) -> None:
        differing = [k for k in ("checkpoint_sha256", "benchmark", "settings") if earlier.get(k) != record.get(k)]
        if differing:
            raise FolderInUseError(f"--resume: results folder {self.path} holds an evaluation with another "
                                   f"{', '.join(differing)}; pass --overwrite to redo it, or choose another --out")

    def _verified_done(self, sequences_of: dict[str, list[str]]) -> set[str]:
        _, done = self._manifest()
        verified = set()
        for name in done:
            masks = sequences_of.get(name)
            if not masks:
                continue
            try:
                for mask in masks:
                    read_mask(mask)
            except (UserError, OSError, ValueError):
                continue
            verified.add(name)
        return verified
