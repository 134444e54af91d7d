"""The memory window and the authors' frame schedule (docs/evaluation.md).

Each frame is encoded once and reduced to its FrameCache (query projections, projected key, LTM
sums: 48 channels instead of 256); a window holds at most MODEL_MAX_MEM of them, so memory does not
grow with the video's length.
"""
from __future__ import annotations

from typing import Callable

import torch

from networks.lsta import LSTA, FrameCache

# One query frame's logits (1,2,h,w) from cached frames: (query, LTM frames, STA frame), LSTA.segment_cached's way.
Step = Callable[[FrameCache, list[FrameCache], FrameCache], torch.Tensor]


class MemoryWindow:
    """The last `size` frames' caches; `logits(i)` is the inference step with query frame i."""

    def __init__(self, size: int) -> None:
        if size < 3:
            raise ValueError(f"MODEL_MAX_MEM must be at least 3 (query, STA frame, one LTM frame), got {size}")
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

    def logits(self, step: Step, index: int) -> torch.Tensor:
        """Query = frame `index`; of the others, in order, the last is the STA frame and the rest are LTM."""
        query = self.frames[index]
        others = [f for i, f in enumerate(self.frames) if i != index % len(self.frames)]
        return step(query, others[:-1], others[-1])


class WindowSchedule:
    """The authors' schedule for one stream of frames: push each frame's cache in order and get
    back the frames that can be predicted now, as (frame index, logits (1,2,h,w)).

    Frames 0..M-1 are predicted once the first window is full (query index t, later frames of the
    window in memory); each later frame t with the window f_{t-M+1}..f_t (LTM f_{t-M+1}..f_{t-2},
    STA f_{t-1}). `finish()` predicts a video shorter than M, its window padded with its last frame.
    """

    def __init__(self, model: LSTA, size: int, step: Step | None = None) -> None:
        self.window, self.last = MemoryWindow(size), -1
        self.step = step or model.segment_cached  # another is the same computation, compiled or exported

    def push(self, cache: FrameCache) -> list[tuple[int, torch.Tensor]]:
        """Add the next frame; the predictions it completes."""
        self.last += 1
        self.window.push(cache)
        size = self.window.size
        if self.last == size - 1:
            return [(i, self.window.logits(self.step, i)) for i in range(size)]
        if self.last >= size:
            return [(self.last, self.window.logits(self.step, -1))]
        return []

    def finish(self) -> list[tuple[int, torch.Tensor]]:
        """The predictions still owed at the end of the video (only a video shorter than the window)."""
        if not 0 <= self.last < self.window.size - 1:
            return []
        self.window.pad()
        return [(i, self.window.logits(self.step, i)) for i in range(self.last + 1)]
