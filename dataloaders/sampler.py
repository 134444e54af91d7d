"""A DistributedSampler that carries the epoch to each sample and can start mid-epoch (exact resume)."""
from __future__ import annotations

from typing import Iterator

from torch.utils.data import Dataset, DistributedSampler


class EpochSampler(DistributedSampler):
    """Yields (index, epoch): a sample's random draws then depend only on (seed, epoch, index).

    The order is DistributedSampler's (shuffled by seed + epoch, split over ranks, drop_last); after
    `set_position(epoch, start)` the first `start` indices of this rank's share are skipped.
    """

    def __init__(self, dataset: Dataset, num_replicas: int = 1, rank: int = 0, seed: int = 0) -> None:
        super().__init__(dataset, num_replicas=num_replicas, rank=rank, shuffle=True, seed=seed, drop_last=True)
        self.start = 0

    def set_position(self, epoch: int, start: int = 0) -> None:
        """Begin at index `start` of this rank's share of `epoch`."""
        self.set_epoch(epoch)
        self.start = start

    def __iter__(self) -> Iterator[tuple[int, int]]:
        indices = list(super().__iter__())[self.start:]
        return iter([(i, self.epoch) for i in indices])

    def __len__(self) -> int:
        return self.num_samples - self.start
