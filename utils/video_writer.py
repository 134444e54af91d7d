"""Browser-playable video files: H.264 in MP4 (yuv420p, index at the front), written frame by frame with PyAV.

OpenCV's writer offers only the MPEG-4 Part 2 codec (`mp4v`) in its wheels, which browsers do not
play; PyAV's wheels carry FFmpeg with libx264, so the overlay videos of the demo, `eval.py
--video` and the reports play in Chromium, Firefox and Safari alike. The file is written under a
temporary name and renamed when closed: a crash leaves no half video under the final name.
"""
from __future__ import annotations

import contextlib
import os
from fractions import Fraction

import numpy as np

from utils.files import temporary_name


class VideoEncoder:
    """An H.264 MP4 at `path`; `write` BGR uint8 frames of one size, `close` to finish it."""

    def __init__(self, path: str, fps: float = 24.0, quality: int = 23) -> None:
        import av

        self.path, self.fps, self.quality = path, fps, quality
        self.temporary = temporary_name(path) + ".mp4"
        os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
        self._container = av.open(self.temporary, mode="w", format="mp4", options={"movflags": "+faststart"})
        self._stream = None
        self.frames = 0

    def write(self, frame: np.ndarray) -> None:
        """Append one (H, W, 3) uint8 BGR frame; odd sides are padded by one pixel (yuv420p needs even ones)."""
        import av

        height, width = frame.shape[:2]
        even = np.pad(frame, ((0, height % 2), (0, width % 2), (0, 0)), mode="edge")
        if self._stream is None:
            self._stream = self._container.add_stream("libx264", rate=Fraction(self.fps).limit_denominator(1001))
            self._stream.width, self._stream.height = even.shape[1], even.shape[0]
            self._stream.pix_fmt = "yuv420p"
            self._stream.options = {"crf": str(self.quality), "preset": "veryfast"}
        picture = av.VideoFrame.from_ndarray(np.ascontiguousarray(even[:, :, ::-1]), format="rgb24")
        for packet in self._stream.encode(picture):
            self._container.mux(packet)
        self.frames += 1

    def close(self) -> None:
        """Flush the encoder and move the finished file into place (nothing when no frame was written)."""
        try:
            if self._stream is not None:
                for packet in self._stream.encode(None):
                    self._container.mux(packet)
            self._container.close()
            if self.frames:
                os.replace(self.temporary, self.path)
        finally:
            with contextlib.suppress(FileNotFoundError):
                os.remove(self.temporary)
