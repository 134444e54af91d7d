"""Timing and memory figures that are honest on GPU: synchronised clocks, peak allocation."""
from __future__ import annotations

import contextlib
import resource
import time
from typing import Iterator

import torch


def synchronize(device: torch.device | str) -> None:
    """Wait for queued CUDA work so that a clock reading covers it (no-op on CPU)."""
    if str(device).startswith("cuda"):
        torch.cuda.synchronize(device)


def now(device: torch.device | str) -> float:
    """perf_counter after synchronising `device`."""
    synchronize(device)
    return time.perf_counter()


def peak_memory_mb(device: torch.device | str) -> float:
    """Peak GPU memory allocated on CUDA, else the process's peak resident memory (MiB)."""
    if str(device).startswith("cuda"):
        return torch.cuda.max_memory_allocated(device) / 2**20
    try:  # Linux: this program's own high-water mark (ru_maxrss also counts the image before exec)
        with open("/proc/self/status") as f:
            return next(int(line.split()[1]) for line in f if line.startswith("VmHWM:")) / 1024
    except (OSError, StopIteration):
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


class SectionTimer:
    """Synchronised wall time per named section (`with timer.measure("encoder"): ...`).

    With `keep_calls`, each call is also kept as (section, synchronised seconds, seconds until the
    block returned without waiting for the GPU): the second is how a loop that never synchronises
    would time it.
    """

    def __init__(self, device: torch.device | str, keep_calls: bool = False) -> None:
        self.device, self.keep_calls = device, keep_calls
        self.seconds: dict[str, float] = {}
        self.calls: list[tuple[str, float, float]] = []
        self.frames = 0  # frames processed, set by the caller

    @contextlib.contextmanager
    def measure(self, name: str) -> Iterator[None]:
        """Time the block as section `name`."""
        start, loose = now(self.device), time.perf_counter()
        yield
        loose_end = time.perf_counter()
        elapsed = now(self.device) - start
        self.seconds[name] = self.seconds.get(name, 0.0) + elapsed
        if self.keep_calls:
            self.calls.append((name, elapsed, loose_end - loose))
