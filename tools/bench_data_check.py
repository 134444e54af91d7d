"""Time of the up-front training-data check (headers only), on the toy data and on a generated
tree the size of DAVIS-2017 + YouTube-VOS-2019 train (≈ 100k frame and mask files).

    python -m tools.bench_data_check [--pairs 50000] [--keep DIR]

Prints the first (cold: every header read) and second (cached: one stat per file) check of each.
The generated files are small copies of one frame and one mask: the check reads headers only, so
their size matters only for a cold disk cache, which this does not measure.
"""
from __future__ import annotations

import argparse
import logging
import os
import shutil
import tempfile
import time

from dataloaders.data_check import check_training_data
from dataloaders.train_datasets import Video, build_train_dataset


def generated_videos(root: str, pairs: int, frames_per_video: int = 30) -> list[Video]:
    """`pairs` frame/mask files in the YouTube-VOS layout, copies of one toy frame and mask."""
    from dataloaders.toy_data import make_toy_data
    toy = os.path.join(root, "toy")
    make_toy_data(toy, seed=0)
    frame = os.path.join(toy, "DAVIS/JPEGImages/480p/toy-train-00/00000.jpg")
    mask = os.path.join(toy, "DAVIS/Annotations/480p/toy-train-00/00000.png")
    videos = []
    for v in range((pairs + frames_per_video - 1) // frames_per_video):
        name = f"{v:06d}"
        os.makedirs(os.path.join(root, "JPEGImages", name))
        os.makedirs(os.path.join(root, "Annotations", name))
        count = min(frames_per_video, pairs - v * frames_per_video)
        images = [os.path.join(root, "JPEGImages", name, f"{5 * t:05d}.jpg") for t in range(count)]
        masks = [os.path.join(root, "Annotations", name, f"{5 * t:05d}.png") for t in range(count)]
        for i, m in zip(images, masks):
            shutil.copyfile(frame, i)
            shutil.copyfile(mask, m)
        videos.append(Video(name, images, masks))
    return videos


def timed_checks(sets: dict[str, list[Video]], cache: str) -> tuple[float, float]:
    """Seconds of a first (cold) and a second (cached) check."""
    log = logging.getLogger("bench")
    times = []
    for _ in range(2):
        start = time.perf_counter()
        check_training_data(sets, cache, False, log)
        times.append(time.perf_counter() - start)
    return times[0], times[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pairs", type=int, default=50000, help="frame/mask pairs to generate (files = 2 × pairs)")
    parser.add_argument("--keep", default=None, help="generate into this folder and keep it")
    args = parser.parse_args()
    work = args.keep or tempfile.mkdtemp(prefix="data_check_")
    try:
        from config import Config
        cfg = Config()
        cfg.apply_preset("toy")
        start = time.perf_counter()
        videos = generated_videos(work, args.pairs)
        print(f"generated {2 * args.pairs} files in {time.perf_counter() - start:.1f} s")
        cfg.set("DIR_DATA", os.path.join(work, "toy"))
        toy_sets = build_train_dataset(cfg).videos_by_set()
        toy_files = 2 * sum(len(v.images) for vs in toy_sets.values() for v in vs)
        cold, warm = timed_checks(toy_sets, os.path.join(work, "toy_cache.json"))
        print(f"toy data ({toy_files} files): first check {cold:.3f} s, cached {warm:.3f} s")
        cold, warm = timed_checks({"generated": videos}, os.path.join(work, "cache.json"))
        print(f"generated tree ({2 * args.pairs} files): first check {cold:.2f} s ({1e6 * cold / (2 * args.pairs):.0f} "
              f"µs/file), cached {warm:.2f} s")
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
