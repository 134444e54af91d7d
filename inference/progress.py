"""How far a video's segmentation has come, and one line that says so (the demo page, eval.py --video's bar).

Frames are read and preprocessed ahead of the model, encoded, and predicted: the first
MODEL_MAX_MEM frames all at once when the first window is full (the authors' schedule), then one
by one. So before the first result the line counts the first window's frames being encoded.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field


@dataclass
class SegmentProgress:
    """Counts of one video's frames: read, encoded, done (result given), out of `total` when known."""
    window: int                  # MODEL_MAX_MEM: the first window's frames are predicted together
    total: int | None = None     # frames in the video (the container's count, the folder's files)
    read: int = 0
    encoded: int = 0
    done: int = 0
    started: float = field(default_factory=time.perf_counter)

    def seconds(self) -> float:
        """Seconds since the video started."""
        return time.perf_counter() - self.started

    def rate(self) -> float:
        """Frames encoded per second so far (the encoder is most of a frame's cost)."""
        return self.encoded / max(self.seconds(), 1e-9)

    def seconds_left(self) -> float | None:
        """An estimate of the time to the last result, once a frame has been encoded and the total is known."""
        if not self.total or not self.encoded:
            return None
        return max(self.total - self.encoded, 0) / max(self.rate(), 1e-9)

    def describe(self) -> str:
        """One line for a person: what is being done, and how far along."""
        total = f" of {self.total}" if self.total else ""
        if self.done == 0:
            first = min(self.window, self.total or self.window)
            return (f"encoding the first window: {self.encoded} of {first} frames ({self.read}{total} read; the "
                    f"first {first} are predicted together)")
        line = f"segmenting: {self.done}{total} frames"
        if self.total:
            line += f" ({100 * self.done / self.total:.0f} %)"
        line += f", {self.rate():.1f} frames/s"
        left = self.seconds_left()
        if left is not None:
            line += f", about {format_duration(left)} left"
        return line


def format_duration(seconds: float) -> str:
    """`45 s`, `3 min 20 s`, `1 h 05 min`."""
    seconds = round(seconds)
    if seconds < 60:
        return f"{seconds} s"
    if seconds < 3600:
        return f"{seconds // 60} min {seconds % 60:02d} s"
    return f"{seconds // 3600} h {seconds % 3600 // 60:02d} min"
