"""DataLoader construction for training: seeded sampler, workers from a forkserver, pinned memory on CUDA."""
from __future__ import annotations

import contextlib
import functools
import multiprocessing
import os
import signal
import threading
import time
from dataclasses import dataclass
from typing import Callable, ContextManager, Iterator

import cv2
import torch
from torch.utils.data import DataLoader, Dataset

from config import Config
from dataloaders.sampler import EpochSampler
from utils.errors import DataError

# Workers never come from a fork of this (threaded) process: a fork copies OpenCV's and OpenMP's
# thread-pool state without the threads, and the child can hang for ever in its first cv2 call.
# A forkserver forks them from a fresh single-threaded server (and they exit without running C++
# static destructors, which abort in a spawned worker stopped mid-epoch); spawn where there is none.
WORKER_START_METHOD = "forkserver" if "forkserver" in multiprocessing.get_all_start_methods() else "spawn"


TRAINER_POLL_SECONDS = 1.0


def _worker_init(_: int, trainer_pid: int) -> None:
    # Stop signals are the main process's to handle (it saves, then stops us); one thread each.
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, signal.SIG_IGN)
    cv2.setNumThreads(1)
    torch.set_num_threads(1)
    # A worker's parent is the forkserver, not the trainer, so torch's own parent watchdog does not
    # see a trainer killed with SIGKILL: watch the trainer itself and leave when it is gone.
    threading.Thread(target=_exit_when_gone, args=(trainer_pid,), daemon=True, name="trainer-watchdog").start()


def _exit_when_gone(pid: int) -> None:
    while True:
        time.sleep(TRAINER_POLL_SECONDS)
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            os._exit(0)
        except PermissionError:  # the pid now belongs to another user's process: ours is gone
            os._exit(0)


@dataclass(frozen=True)
class LoaderSettings:
    """The loader's seed, worker count and whether batches are pinned for a GPU."""
    seed: int           # TRAIN_SEED
    workers: int        # DATA_WORKERS
    pin_memory: bool    # DEVICE is a GPU

    @classmethod
    def from_config(cls, cfg: Config) -> "LoaderSettings":
        """The loader a Config describes."""
        return cls(cfg.TRAIN_SEED, cfg.DATA_WORKERS, str(cfg.DEVICE).startswith("cuda"))


def build_train_loader(dataset: Dataset, settings: LoaderSettings, batch_size: int, rank: int = 0,
                       world_size: int = 1) -> tuple[DataLoader, EpochSampler]:
    """A loader of `batch_size` samples per step for this rank, and its sampler (set_position to resume)."""
    sampler = EpochSampler(dataset, num_replicas=world_size, rank=rank, seed=settings.seed)
    if len(sampler) < batch_size:
        raise DataError(f"training set has {len(dataset)} samples, fewer than {batch_size * world_size} "
                         f"(one global batch); raise DATA_DAVIS_REPEAT or lower TRAIN_BATCH_SIZE")
    workers = settings.workers
    loader = DataLoader(dataset, batch_size=batch_size, sampler=sampler, num_workers=workers,
                        pin_memory=settings.pin_memory, drop_last=True,
                        worker_init_fn=functools.partial(_worker_init, trainer_pid=os.getpid()),
                        persistent_workers=workers > 0,
                        multiprocessing_context=WORKER_START_METHOD if workers > 0 else None,
                        # Its own generator: creating an iterator must not draw from the global RNG
                        # (dropout's), or a resumed run would diverge from an uninterrupted one.
                        generator=torch.Generator().manual_seed(settings.seed),
                        prefetch_factor=2 if workers > 0 else None)
    return loader, sampler


def epoch_batches(loader: DataLoader, sampler: EpochSampler, start_step: int, rank_batch: int,
                  starting: Callable[[], ContextManager] = contextlib.nullcontext) -> Iterator[dict]:
    """Batches from step `start_step` on, epoch after epoch (a resumed run continues mid-epoch).

    `starting()` is entered while the loader starts its workers (training ignores stop signals there).
    """
    epoch, offset = divmod(start_step, sampler.num_samples // rank_batch)
    sampler.set_position(epoch, offset * rank_batch)
    with starting():
        batches = iter(loader)
    while True:
        yield from batches
        epoch += 1
        sampler.set_position(epoch, 0)
        batches = iter(loader)
