"""The up-front check of the training data, before step 0: every listed frame and mask exists,
has a readable header, and the sizes of a frame and its mask agree.

Headers only (no decoding): seconds for DAVIS + YouTube-VOS. A scan that passed is remembered
by a digest of every file's path, size and modification time, so an unchanged dataset is not
read again (the digest needs one `stat` per file).
"""
from __future__ import annotations

import hashlib
import json
import logging
import os

from tqdm import tqdm

from dataloaders.train_datasets import Video
from utils.errors import DataError, MissingFileError
from utils.files import write_json
from utils.image_io import check_same_size


def listing_digest(videos: list[Video]) -> str:
    """SHA-256 of every frame's and mask's path, size and mtime (FileNotFoundError for a missing file)."""
    digest = hashlib.sha256()
    for video in videos:
        for path in video.images + video.masks:
            try:
                stat = os.stat(path)
            except FileNotFoundError:
                raise MissingFileError(f"training file not found: {path} (listed for video {video.name!r})") from None
            digest.update(f"{path}\0{stat.st_size}\0{stat.st_mtime_ns}\n".encode())
    return digest.hexdigest()


def find_problems(videos: list[Video], name: str) -> list[str]:
    """One line per file that is missing, has no readable header, or whose mask size differs from its frame's."""
    problems = []
    total = sum(len(v.images) for v in videos)
    with tqdm(total=total, desc=f"checking {name}", unit="frame", disable=None, leave=False) as bar:
        for video in videos:
            for image, mask in zip(video.images, video.masks):
                try:
                    check_same_size(image, mask)
                except (OSError, ValueError) as err:
                    problems.append(str(err))
                bar.update(1)
    return problems


def check_training_data(parts: dict[str, list[Video]], cache_path: str | None, skip_bad: bool,
                        log: logging.Logger) -> int:
    """Scan each training set's files once; DataError on the first problem, or a warning when `skip_bad`.

    Returns the number of problems found (skipped samples will avoid them at sampling time).
    """
    cache = _read_cache(cache_path)
    found = 0
    for name, videos in parts.items():
        try:
            digest = listing_digest(videos)
        except FileNotFoundError as err:
            if not skip_bad:
                raise DataError(f"{name}: {err}") from None
            digest = None
        if digest is not None and digest in cache.get(name, []):
            continue
        problems = find_problems(videos, name)
        if problems and not skip_bad:
            more = f" (and {len(problems) - 1} more problems)" if len(problems) > 1 else ""
            raise DataError(f"{name}: {problems[0]}{more}")
        if problems:
            log.warning(f"{name}: {len(problems)} files fail the check (first: {problems[0]}); samples that "
                        f"draw them are skipped (DATA_SKIP_BAD_SAMPLES)")
            found += len(problems)
        elif cache_path and digest is not None:
            cache[name] = (cache.get(name, []) + [digest])[-8:]
    if cache_path:
        try:
            write_json(cache_path, cache)
        except OSError:  # a read-only place: the next run scans again
            pass
    return found


def _read_cache(path: str | None) -> dict[str, list[str]]:
    if not path or not os.path.isfile(path):
        return {}
    try:
        with open(path) as f:
            cache = json.load(f)
        return cache if isinstance(cache, dict) else {}
    except (OSError, ValueError):
        return {}
