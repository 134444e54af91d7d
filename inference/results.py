"""Where a segmenter's results go: mask PNGs, probability PNGs, overlay images and an overlay video (H.264).

Writes run on threads off the model's path (two; more beside a GPU); `close()` waits for them and raises the first
failure (a full disk must not pass silently). Every file is written atomically.
"""
from __future__ import annotations

import contextlib
import os
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Callable, Iterable, Iterator

import numpy as np
import torch

from inference.segmenter import SegmentedFrame, VideoInput, VideoSegmenter
from utils.image_io import write_grey_png, write_image, write_palette_png
from utils.overlay import overlay
from utils.video_writer import VideoEncoder

MAX_QUEUED = 64


def default_write_threads(device: torch.device) -> int:
    """Threads writing a video's files: a GPU gives frames faster than two threads encode PNGs (zlib frees the GIL)."""
    return min(8, os.cpu_count() or 1) if device.type == "cuda" else 2


class ResultWriter:
    """Writes each frame's results under `folder`: `<masks>/<name>.png` and, as asked, probability
    maps (8-bit, `probabilities/`), overlays (`overlays/`) and an overlay video."""

    def __init__(self, masks: str, probabilities: str | None = None, overlays: str | None = None,
                 video: str | None = None, fps: float = 24.0, threads: int = 2) -> None:
        self.masks, self.probabilities, self.overlays = masks, probabilities, overlays
        self.video_path, self.fps = video, fps
        self.video: VideoEncoder | None = None
        self.pool = ThreadPoolExecutor(threads)
        self.futures: list[Future] = []
        self.written: list[str] = []  # every file queued, for the results folder's record

    def write(self, name: str, frame: SegmentedFrame, mask: np.ndarray | None = None) -> None:
        """Queue the files of one frame (`mask` replaces the predicted one, e.g. a copied ground truth)."""
        mask = frame.mask if mask is None else mask
        self._submit(write_palette_png, os.path.join(self.masks, name + ".png"), mask)
        if self.probabilities:
            probability = np.round(frame.probability * 255).astype(np.uint8)
            self._submit(write_grey_png, os.path.join(self.probabilities, name + ".png"), probability)
        if self.overlays or self.video_path:
            shown = overlay(frame.image, mask)
            if self.overlays:
                self._submit(write_image, os.path.join(self.overlays, name + ".jpg"), shown)
            if self.video_path:
                self._video_frame(shown)

    def close(self) -> None:
        """Wait for every queued write; raise the first that failed."""
        try:
            self._drain(0)
        finally:
            self.pool.shutdown(wait=True)
            if self.video is not None:
                self.video.close()

    def _submit(self, fn, path: str, *args) -> None:
        self.written.append(path)
        self.futures.append(self.pool.submit(fn, path, *args))
        if len(self.futures) > MAX_QUEUED:
            self._drain(MAX_QUEUED // 2)

    def _drain(self, keep: int) -> None:
        while len(self.futures) > keep:
            self.futures.pop(0).result()

    def _video_frame(self, shown: np.ndarray) -> None:
        if self.video is None:
            self.written.append(self.video_path)
            self.video = VideoEncoder(self.video_path, self.fps)
        self.video.write(shown)


def segment_and_write(segmenter: VideoSegmenter, frames: str | Iterable, writer: ResultWriter,
                      replace_mask: Callable[[SegmentedFrame], np.ndarray | None] | None = None,
                      **segment_options) -> Iterator[SegmentedFrame]:
    """Every frame's result (VideoSegmenter.segment with `segment_options`) written by `writer` under the frame's
    name as it comes, then yielded; `writer` is closed at the end, whatever ends the stream.

    `replace_mask(frame)` may give a mask to write instead of the predicted one (the authors' copy of
    frame 0's ground truth). One video of `segment_videos_and_write`.
    """
    video = VideoInput(frames, **segment_options)
    for _, frame in segment_videos_and_write(segmenter, [video], lambda _: writer,
                                             (lambda _, f: replace_mask(f)) if replace_mask else None, in_flight=1):
        if frame is not None:
            yield frame


def segment_videos_and_write(segmenter: VideoSegmenter, videos: Iterable[VideoInput],
                             writer_for: Callable[[VideoInput], ResultWriter],
                             replace_mask: Callable[[VideoInput, SegmentedFrame], np.ndarray | None] | None = None,
                             in_flight: int | None = None) -> Iterator[tuple[VideoInput, SegmentedFrame | None]]:
    """VideoSegmenter.segment_videos with every frame's result written as it comes by its video's writer
    (`writer_for(video)`, asked once per video), then yielded; (video, None) once a video's writer has closed,
    all its files written. Every writer is closed at the end, whatever ends the stream.

    The one segment-then-write loop of evaluations, the demo and the benchmarks.
    """
    writers: dict[int, ResultWriter] = {}  # by id(video): the videos in flight
    try:  # a failure stops every video: their writers close, a write failing then does not hide the first error
        for video, frame in segmenter.segment_videos(videos, in_flight):
            writer = writers.get(id(video)) or writers.setdefault(id(video), writer_for(video))
            if frame is None:
                writers.pop(id(video)).close()
            else:
                writer.write(frame.name, frame, replace_mask(video, frame) if replace_mask else None)
            yield video, frame
    finally:
        for writer in writers.values():
            with contextlib.suppress(Exception):
                writer.close()
