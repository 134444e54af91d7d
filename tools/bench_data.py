"""Training-data throughput at the authors' settings (7 frames of 465×465 per sample) on toy data.

    python -m tools.bench_data [--data data/toy] [--samples 64] [--workers 1 2]

Toy data is generated into a temporary folder when --data does not exist.
"""
from __future__ import annotations

import argparse
import time

from config import Config
from dataloaders.loader import LoaderSettings, build_train_loader
from dataloaders.toy_data import ensure_toy_data
from dataloaders.train_datasets import build_train_dataset


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default="data/toy")
    parser.add_argument("--samples", type=int, default=64)
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    args = parser.parse_args()
    data = ensure_toy_data(args.data)
    cfg = Config()  # the authors' sampling and augmentation: 465×465, 5 current frames
    cfg.set("DIR_DATA", data)
    cfg.set("DATA_DAVIS_REPEAT", 30)
    dataset = build_train_dataset(cfg)
    print(f"{len(dataset)} samples of {cfg.DATA_CURR_SEQ_LEN + 2} frames at {cfg.DATA_RANDOMCROP}, from {data}")
    for workers in args.workers:
        cfg.set("DATA_WORKERS", workers)
        loader, sampler = build_train_loader(dataset, LoaderSettings.from_config(cfg), batch_size=1)
        iterator = iter(loader)
        next(iterator)  # start the workers before timing
        start, count = time.perf_counter(), 0
        for _ in iterator:
            count += 1
            if count == args.samples:
                break
        rate = count / (time.perf_counter() - start)
        print(f"workers {workers}: {rate:.1f} samples/s ({rate / workers:.1f} per worker)")
        del iterator, loader  # stop these workers now, not during interpreter shutdown


if __name__ == "__main__":
    main()
