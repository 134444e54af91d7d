"""One upload of the demo page, segmented on a thread of its own: progress, stop, a state file, downloads.

    job = DemoJob(segmenter, "clip.mp4", jobs_dir, max_side=480)
    job.start()
    for update in job.updates():        # at least every UPDATE_EVERY_S, from the first second
        update.status, update.overlay, update.fraction
    job.stop()                          # from another thread: ends within one frame's time

The job folder `<jobs_dir>/<time>-<name>-<random>/` holds `job.json` (`state`: running, stopped,
done or failed; frames done of the total; the working size), the frames of a zip, the masks,
probability maps and overlays, `<name>_overlay.mp4` and, once it ends however it ends, the zips
`<name>_masks.zip` and `<name>_probabilities.zip` of the frames that were finished.
"""
from __future__ import annotations

import logging
import os
import queue
import tempfile
import threading
import time
import zipfile
from dataclasses import dataclass, field
from typing import Iterator

import cv2
import numpy as np

from inference.progress import SegmentProgress, format_duration
from inference.results import ResultWriter, segment_and_write
from inference.segmenter import SegmentedFrame, VideoSegmenter
from utils.errors import UserError, user_message
from utils.files import write_json
from utils.frame_archive import extract_frames
from utils.image_io import DamagedVideoError, video_fps
from utils.names import safe_file_name
from utils.overlay import overlay

UPDATE_EVERY_S = 0.5    # the page hears from the job at least this often
log = logging.getLogger("lsta.demo")
STATES = ("running", "stopped", "done", "failed")


class StopRequested(Exception):
    """Raised inside the segmentation when the user pressed Stop."""


@dataclass
class Update:
    """One refresh of the page: a status line, the newest overlay (RGB), how far along; at the end, the results."""
    status: str
    overlay: np.ndarray | None = None
    fraction: float | None = None          # 0..1 when the total is known
    frames: int = 0                        # frames done
    finished: bool = False
    downloads: list[str] = field(default_factory=list)
    video: str | None = None               # the overlay video, once finished


def job_name(upload: str) -> str:
    """The name a job's files carry: the upload's name without extension, made safe."""
    return safe_file_name(os.path.splitext(os.path.basename(upload))[0]) or "video"


class DemoJob:
    """The segmentation of one upload in its own folder, run by `start()` on a worker thread."""

    def __init__(self, segmenter: VideoSegmenter, upload: str, jobs_dir: str, max_side: int | None,
                 zip_limits: tuple[int, int] = (20000, 4 << 30)) -> None:
        self.segmenter, self.upload, self.max_side, self.zip_limits = segmenter, upload, max_side, zip_limits
        self.name, self.label = job_name(upload), os.path.basename(upload)
        os.makedirs(jobs_dir, exist_ok=True)
        self.folder = tempfile.mkdtemp(prefix=f"{time.strftime('%Y%m%d-%H%M%S')}-{self.name}-", dir=jobs_dir)
        self.video = os.path.join(self.folder, f"{self.name}_overlay.mp4")
        self._stop = threading.Event()
        self._events: queue.Queue = queue.Queue()
        self._thread = threading.Thread(target=self._run, name=f"demo-job-{self.name}", daemon=True)
        self.progress: SegmentProgress | None = None
        self.frame_size = (0, 0)  # (width, height) of the frames as segmented, once the first is done
        self.state, self.error, self.started = "running", None, time.time()
        self._record()

    # ---- control ----
    def start(self) -> None:
        """Begin segmenting on the worker thread."""
        self._thread.start()

    def stop(self) -> None:
        """Ask the job to end: it stops within one frame's time and keeps what it finished."""
        self._stop.set()

    def join(self, timeout: float | None = None) -> None:
        """Wait for the worker thread."""
        self._thread.join(timeout)

    # ---- what the page sees ----
    def updates(self) -> Iterator[Update]:
        """The page's refreshes until the job has ended, at least every UPDATE_EVERY_S; the last carries the results."""
        latest: SegmentedFrame | None = None
        shown_index, ended = -1, False
        while not ended:
            try:
                events = [self._events.get(timeout=UPDATE_EVERY_S)]
            except queue.Empty:
                events = []
            while not self._events.empty():  # only the newest frame is shown: the rest are on disk
                events.append(self._events.get_nowait())
            for kind, value in events:
                if kind == "frame":
                    latest = value
                ended = ended or kind == "end"
            shown = None
            if latest is not None and latest.index != shown_index:
                shown_index = latest.index
                shown = cv2.cvtColor(overlay(latest.image, latest.mask), cv2.COLOR_BGR2RGB)
            if not ended:
                yield Update(self.status_line(), shown, self.fraction(), self.progress.done if self.progress else 0)
        yield self._final_update()

    def status_line(self) -> str:
        """What the job is doing now, and how far along."""
        elapsed = format_duration(time.time() - self.started)
        if self.progress is None:
            return f"reading {self.label} ({elapsed})"
        return f"{self.progress.describe()} ({elapsed} so far)"

    def fraction(self) -> float | None:
        """The share of frames done, when the total is known."""
        p = self.progress
        return None if p is None or not p.total else min(p.done / p.total, 1.0)

    # ---- the worker ----
    def _run(self) -> None:
        try:
            source = self.upload
            if self.upload.lower().endswith(".zip"):
                source = extract_frames(self.upload, os.path.join(self.folder, "frames"), self.label, *self.zip_limits)
            writer = ResultWriter(os.path.join(self.folder, "masks", self.name),
                                  os.path.join(self.folder, "probabilities", self.name),
                                  os.path.join(self.folder, "overlays"), self.video, video_fps(source))
            for frame in segment_and_write(self.segmenter, source, writer, max_side=self.max_side, name=self.label,
                                           progress=self._on_progress):
                self.frame_size = frame.image.shape[1], frame.image.shape[0]
                self._events.put(("frame", frame))
            self.state = "done"
        except StopRequested:
            self.state = "stopped"
        except DamagedVideoError:
            self.state, self.error = "done", "damaged"
        except (UserError, OSError) as err:  # bad input, a full disk: one line on the page
            self.state, self.error = "failed", user_message(err)
        except Exception as err:  # a bug: the page says so in one line, the log keeps the traceback
            log.exception(f"{self.label}: unexpected error")
            self.state, self.error = "failed", f"unexpected error ({type(err).__name__}); see the server's log"
        finally:
            self._finish()

    def _on_progress(self, progress: SegmentProgress) -> None:
        self.progress = progress
        if self._stop.is_set():
            raise StopRequested()

    def _finish(self) -> None:
        """Zip what was finished, record the final state, tell the page."""
        try:
            self.downloads = [p for p in (self._zip("masks"), self._zip("probabilities")) if p]
            if os.path.isfile(self.video):
                self.downloads.insert(0, self.video)
        except OSError as err:
            self.downloads = []
            self.state, self.error = "failed", self.error or user_message(err)
        self._record()
        self._events.put(("end", None))

    def _zip(self, kind: str) -> str | None:
        folder = os.path.join(self.folder, kind, self.name)
        if not os.path.isdir(folder) or not os.listdir(folder):
            return None
        path = os.path.join(self.folder, f"{self.name}_{kind}.zip")
        with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
            for name in sorted(os.listdir(folder)):
                archive.write(os.path.join(folder, name), f"{self.name}/{name}")
        return path

    def _record(self) -> None:
        p = self.progress
        write_json(os.path.join(self.folder, "job.json"), {
            "state": self.state, "upload": self.label, "frames_done": p.done if p else 0,
            "frames_total": p.total if p else None, "max_side": self.max_side, "started": self.started,
            "updated": time.time(), "error": self.error})

    def _final_update(self) -> Update:
        done = self.progress.done if self.progress else 0
        seconds = time.time() - self.started
        if self.state == "failed":
            return Update(f"error: {self.error}", finished=True)
        if self.state == "stopped":
            status = f"stopped: {done} frames finished in {format_duration(seconds)}; their results are below"
        elif self.error == "damaged":
            status = (f"damaged file: kept the {done} frames that decoded ({format_duration(seconds)}); the rest of "
                      f"{self.label} could not be read")
        else:
            status = f"done: {done} frames in {format_duration(seconds)} ({done / max(seconds, 1e-9):.1f} frames/s)"
        if done == 0 and self.state != "stopped":
            return Update(f"error: no frame of {self.label} could be decoded", finished=True)
        return Update(status, None, self.fraction(), done, True, self.downloads,
                      self.video if os.path.isfile(self.video) else None)
