"""Timing and memory figures that are honest on GPU: synchronised clocks, peak allocation."""
from __future__ import annotations

import resource
import time

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
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
