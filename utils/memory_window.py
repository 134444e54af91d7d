"""Inference state: the window of cached frames and the authors' window schedule (docs/evaluation.md).

Each frame is encoded once and reduced to its FrameCache (query projections, projected key, LTM
sums: 48 channels instead of 256); the window holds at most MODEL_MAX_MEM of them, so memory does
not grow with the video's length.
"""
from __future__ import annotations

from contextlib import nullcontext
from typing import Callable, ContextManager, Iterable, Iterator

import torch

from networks.lsta import LSTA, FrameCache


class MemoryWindow:
    """The last `size` frames' caches; `logits(i)` is the inference step with query frame i."""

    def __init__(self, size: int) -> None:
        if size < 2:
            raise ValueError(f"MODEL_MAX_MEM must be at least 2 (query + STA frame), got {size}")
        self.size = size
        self.frames: list[FrameCache] = []

    def push(self, frame: FrameCache) -> None:
        """Add the newest frame, dropping the oldest when full."""
        self.frames.append(frame)
        if len(self.frames) > self.size:
            self.frames.pop(0)

    def pad(self) -> None:
        """Fill the window by repeating its newest frame (short videos, docs/quirks.md)."""
        while len(self.frames) < self.size:
            self.frames.append(self.frames[-1])

    def logits(self, model: LSTA, index: int) -> torch.Tensor:
        """Query = frame `index`; of the others, in order, the last is the STA frame and the rest are LTM."""
        query = self.frames[index]
        others = [f for i, f in enumerate(self.frames) if i != index % len(self.frames)]
        return model.segment_cached(query, others[:-1], others[-1])


def predict_video(model: LSTA, batches: Iterable[torch.Tensor], window_size: int,
                  measure: Callable[[str], ContextManager] | None = None) -> Iterator[tuple[int, torch.Tensor]]:
    """(frame index, logits (1,2,h,w)) for every frame, in the authors' window schedule.

    `batches` yields preprocessed frames (B,3,H,W) on the model's device, in order; encoding in
    batches changes nothing but speed. Frames 0..M-1 are predicted once the first window is full
    (query index t, later frames of the window in memory); each later frame t with the window
    f_{t-M+1}..f_t (LTM f_{t-M+1}..f_{t-2}, STA f_{t-1}). Videos shorter than M pad the window
    with their last frame. `measure(section)` wraps the encoder and head computations (timing).
    """
    measure = measure or (lambda _: nullcontext())
    window = MemoryWindow(window_size)
    t = -1
    for batch in batches:
        with measure("encoder"):
            caches = model.cache_frames(model.encode(batch)).split()
        for cache in caches:
            t += 1
            window.push(cache)
            if t == window_size - 1:
                for i in range(window_size):
                    with measure("head"):
                        logits = window.logits(model, i)
                    yield i, logits
            elif t >= window_size:
                with measure("head"):
                    logits = window.logits(model, -1)
                yield t, logits
    if 0 <= t < window_size - 1:
        window.pad()
        for i in range(t + 1):
            with measure("head"):
                logits = window.logits(model, i)
            yield i, logits
