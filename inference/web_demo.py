"""The web page of `demo.py`: upload a video (or a zip of frames), pick a working size, watch it segmented, play it.

Every upload is a DemoJob (inference/demo_job.py): segmented by `VideoSegmenter.segment` on a
thread of its own, every result written to disk as it comes, the page refreshed at least every
half second from the first one (what is being done, frames done of the total, frames/s, the time
left), a Stop button that ends it within one frame's time, and the results named after the upload:
`<name>_overlay.mp4` (H.264: it plays in the page), `<name>_masks.zip`, `<name>_probabilities.zip`.
Before starting, the page shows a preview of the upload and the expected time at the chosen
working size. Uploads queue: one segmentation runs at a time (on a CPU, two would only slow each
other).
"""
from __future__ import annotations

import os
import re
import tempfile
import threading
import time
import zipfile
from dataclasses import dataclass
from typing import Iterator

import cv2
import numpy as np

from inference.demo_job import DemoJob, Update
from inference.progress import format_duration
from inference.results import ResultWriter
from inference.segmenter import SegmentedFrame, VideoSegmenter
from utils.errors import DataError, UserError, user_message
from utils.frame_archive import image_members
from utils.image_io import frame_count, iter_video_frames, read_image
from utils.names import natural_key
from utils.video_writer import VideoEncoder

STATUS_ID = "status"          # the page's one-line status (tests read it)
MAX_ZIP_FRAMES = 20000
ORIGINAL = "original"
PREVIEW_SIDE, PREVIEW_SECONDS = 480, 10


@dataclass(frozen=True)
class DemoSettings:
    """What the page offers and allows: working sizes, upload size, bundled clips, where jobs are written."""
    max_side: int = 320                          # the working size chosen when the page opens (demo.py --max_side)
    max_upload_mb: int = 200
    jobs_dir: str = "log/demo"
    examples: tuple[str, ...] = ()
    sizes: tuple[int, ...] = (320, 480, 854)     # the working sizes offered (longer side), besides the original
    max_zip_frames: int = MAX_ZIP_FRAMES
    max_zip_expanded_mb: int = 4096              # a zip's frames once extracted: a small upload must not fill the disk


@dataclass
class UploadInfo:
    """What the page tells of an upload before segmenting it."""
    frames: int | None
    width: int
    height: int
    fps: float | None


def describe_upload(path: str) -> UploadInfo:
    """Frame count, size and frame rate of a video file or a zip of frames, read without decoding it all."""
    if path.lower().endswith(".zip"):
        try:
            with zipfile.ZipFile(path) as archive:
                names = sorted((m.filename for m in image_members(archive)), key=natural_key)
                if not names:
                    raise DataError(f"{os.path.basename(path)} holds no image frames")
                first = cv2.imdecode(np.frombuffer(archive.read(names[0]), np.uint8), cv2.IMREAD_COLOR)
        except (zipfile.BadZipFile, OSError, RuntimeError, NotImplementedError, EOFError) as err:
            raise DataError(f"{os.path.basename(path)} is not a readable zip file ({err})") from None
        if first is None:
            raise DataError(f"{os.path.basename(path)}: its first frame {names[0]} cannot be decoded")
        return UploadInfo(len(names), first.shape[1], first.shape[0], None)
    capture = cv2.VideoCapture(path)
    try:
        ok, first = capture.read()
        fps = capture.get(cv2.CAP_PROP_FPS) or None
    finally:
        capture.release()
    if not ok:
        raise DataError(f"cannot open {os.path.basename(path)} as a video: not a video file, or in a format this "
                        f"build of FFmpeg cannot decode")
    return UploadInfo(frame_count(path), first.shape[1], first.shape[0], fps)


def working_size(info: UploadInfo, choice: str) -> tuple[int, int]:
    """(width, height) of the frames once shrunk to the chosen working size (never enlarged)."""
    side = max(info.width, info.height)
    limit = side if choice == ORIGINAL else min(int(choice), side)
    scale = limit / side
    return round(info.width * scale), round(info.height * scale)


class SpeedEstimate:
    """Seconds a frame takes at a working size: timed once at start-up (the model, decoding and writing), then learnt
    from every finished job.

    The cost of a frame grows with its pixels (the encoder's convolutions), so one figure per pixel
    carries from one size to another.
    """

    def __init__(self, segmenter: VideoSegmenter) -> None:
        image = np.random.RandomState(0).randint(0, 256, (180, 320, 3), np.uint8)
        segmenter.warm_up(image)  # lazy initialisation and the first call's costs
        start = time.perf_counter()
        segmenter.warm_up(image)
        model = (time.perf_counter() - start) / segmenter.encode_batch
        self.seconds_per_pixel = (model + _writing_seconds(image)) / (180 * 320)
        self.lock = threading.Lock()

    def seconds(self, frames: int, size: tuple[int, int]) -> float:
        """Expected seconds for `frames` frames of `size` (width, height)."""
        return frames * size[0] * size[1] * self.seconds_per_pixel

    def learn(self, frames: int, size: tuple[int, int], seconds: float) -> None:
        """Take a finished job's own rate as the estimate from now on."""
        if frames and size[0] * size[1]:
            with self.lock:
                self.seconds_per_pixel = seconds / frames / (size[0] * size[1])


def _writing_seconds(image: np.ndarray, frames: int = 4) -> float:
    """Seconds a job spends per frame besides the model: decoding it, and writing what a job writes of it (mask,
    probability map, overlay image, a frame of the overlay video), timed on `image`."""
    mask = (image[:, :, 0] > 127).astype(np.uint8)
    result = SegmentedFrame(0, mask, mask.astype(np.float32), image)
    encoded = cv2.imencode(".jpg", image)[1]
    with tempfile.TemporaryDirectory() as folder:
        start = time.perf_counter()
        writer = ResultWriter(os.path.join(folder, "masks"), os.path.join(folder, "probabilities"),
                              os.path.join(folder, "overlays"), os.path.join(folder, "overlay.mp4"))
        for index in range(frames):
            cv2.imdecode(encoded, cv2.IMREAD_COLOR)
            writer.write(f"{index:05d}", result)
        writer.close()
        return (time.perf_counter() - start) / frames


def preview(path: str, folder: str) -> str:
    """An H.264 preview of a video's first PREVIEW_SECONDS at PREVIEW_SIDE pixels: any upload plays in the page."""
    info = describe_upload(path)
    limit = round((info.fps or 24) * PREVIEW_SECONDS)
    target = os.path.join(folder, f"preview-{os.getpid()}-{time.time_ns()}.mp4")
    encoder = VideoEncoder(target, info.fps or 24)
    try:
        for index, frame in enumerate(iter_video_frames(path, PREVIEW_SIDE, accept_partial=True)):
            if index == limit:
                break
            encoder.write(frame)
    finally:
        encoder.close()
    return target


def progress_bar(fraction: float | None) -> str:
    """The page's progress bar (HTML): filled to `fraction`, or moving when the total is unknown."""
    value = "" if fraction is None else f' value="{fraction:.3f}"'
    return f'<progress id="progress-bar" max="1"{value} style="width:100%"></progress>'


def page_text(message: str, upload: str, jobs_dir: str) -> str:
    """An error line as the page shows it: the user's file by its name, never the server's paths."""
    for place in sorted({os.path.abspath(upload), upload}, key=len, reverse=True):
        message = message.replace(place, os.path.basename(upload))
    # A frame extracted from a zip: <jobs>/<job>/frames/<frame> → <frame>
    return re.sub(re.escape(os.path.abspath(jobs_dir)) + r"/[^/\s]+/frames/", "",
                  re.sub(re.escape(jobs_dir.rstrip("/")) + r"/[^/\s]+/frames/", "", message))


class DemoPage:
    """What the page's events do: describe an upload, run a job (one at a time), stop it, scrub its frames."""

    def __init__(self, segmenter: VideoSegmenter, settings: DemoSettings) -> None:
        self.segmenter, self.settings = segmenter, settings
        self.speed = SpeedEstimate(segmenter)
        self.jobs: dict[str, DemoJob] = {}   # running jobs by folder: what Stop reaches
        os.makedirs(os.path.join(settings.jobs_dir, "previews"), exist_ok=True)

    def choices(self) -> list[str]:
        """The working sizes the page offers."""
        return [str(s) for s in self.settings.sizes] + [ORIGINAL]

    def preview(self, upload: str | None, example: str | None) -> str | None:
        """A playable preview of the upload (a video file's first seconds), or None."""
        path = upload or example
        if not path or path.lower().endswith(".zip"):
            return None
        try:
            return preview(path, os.path.join(self.settings.jobs_dir, "previews"))
        except (UserError, OSError):
            return None  # describe() says what is wrong with it

    def describe(self, upload: str | None, example: str | None, choice: str) -> str:
        """One line: the upload's frames, size, frame rate, and the expected time at the working size `choice`."""
        path = upload or example
        if not path:
            return "Upload a video file or a zip of frames, or pick a toy clip."
        try:
            info = describe_upload(path)
        except (UserError, OSError) as err:
            return f"error: {page_text(user_message(err), path, self.settings.jobs_dir)}"
        width, height = working_size(info, choice)
        frames = f"{info.frames} frames" if info.frames else "frames"
        rate = f" at {info.fps:.1f} frames/s" if info.fps else ""
        expected = ""
        if info.frames:
            seconds = self.speed.seconds(info.frames, (width, height))
            expected = f"; at {choice} px ({width}×{height}) about {format_duration(seconds)} on this machine"
        return f"**{os.path.basename(path)}**: {frames} of {info.width}×{info.height}{rate}{expected}."

    def run(self, upload: str | None, example: str | None, choice: str) -> Iterator[tuple[Update, str | None]]:
        """A job for the upload, and its page updates with the job's folder; one line for bad input."""
        path = upload or example
        if not path:
            yield Update("error: upload a video or a zip of frames, or pick a toy clip", finished=True), None
            return
        if upload and os.path.getsize(upload) > self.settings.max_upload_mb * 2 ** 20:
            yield Update(f"error: {os.path.basename(upload)} is larger than the page's limit of "
                         f"{self.settings.max_upload_mb} MB", finished=True), None
            return
        side = None if choice == ORIGINAL else int(choice)
        job = DemoJob(self.segmenter, path, self.settings.jobs_dir, side,
                      (self.settings.max_zip_frames, self.settings.max_zip_expanded_mb * 2 ** 20))
        self.jobs[job.folder] = job
        job.start()
        try:
            yield Update(job.status_line()), job.folder
            for update in job.updates():
                update.status = page_text(update.status, path, self.settings.jobs_dir)
                yield update, job.folder
        finally:  # also when the page goes away mid-job: the job stops and records it
            job.stop()
            job.join()
            self.jobs.pop(job.folder, None)
            if job.state == "done" and job.progress and job.progress.done:
                self.speed.learn(job.progress.done, job.frame_size, time.time() - job.started)

    def stop(self, folder: str | None) -> None:
        """Stop the job of this page, if it runs."""
        job = self.jobs.get(folder or "")
        if job is not None:
            job.stop()

    def scrub(self, index: float, folder: str | None) -> np.ndarray | None:
        """The overlay of frame `index` of a finished job (RGB)."""
        overlays = os.path.join(folder or "", "overlays")
        if not folder or not os.path.isdir(overlays):
            return None
        names = sorted(os.listdir(overlays), key=natural_key)  # the frames' own order
        index = int(index)
        return cv2.cvtColor(read_image(os.path.join(overlays, names[index])), cv2.COLOR_BGR2RGB) \
            if 0 <= index < len(names) else None


def build_demo(segmenter: VideoSegmenter, settings: DemoSettings):
    """The Gradio page (gr.Blocks), queued one job at a time."""
    import gradio as gr

    page = DemoPage(segmenter, settings)

    def run(upload, example, choice):
        for update, folder in page.run(upload, example, choice):
            slider = (gr.update(maximum=max(update.frames - 1, 1), value=max(update.frames - 1, 0), interactive=True)
                      if update.finished and update.frames else gr.update())
            yield (update.status, progress_bar(1.0 if update.finished else update.fraction),
                   update.overlay if update.overlay is not None else gr.update(),
                   gr.update(value=update.video, visible=True) if update.video else gr.update(), slider,
                   update.downloads or (None if update.finished else gr.update()), folder)

    with gr.Blocks(title="LSTA video object segmentation") as blocks:
        gr.Markdown("## LSTA: segment the main object of a video\nUpload a video file or a zip of frames, "
                    "or pick a toy clip. No mask is needed: the model finds the object itself.")
        with gr.Row():
            with gr.Column():
                upload = gr.File(label="video or zip of frames", file_types=["video", ".zip", ".avi", ".mp4",
                                                                            ".mov", ".mkv", ".webm"],
                                 elem_id="upload")
                example = gr.Dropdown([(f"toy clip: {os.path.basename(p)}", p) for p in settings.examples], value=None,
                                      label="or a toy clip", elem_id="example")
                clip = gr.Video(label="preview", interactive=False, elem_id="preview", autoplay=False)
                info = gr.Markdown(elem_id="upload-info")
                choices = page.choices()
                size = gr.Radio(choices, value=str(settings.max_side) if str(settings.max_side) in choices
                                else choices[0], label="working size (longer side, pixels): smaller is faster",
                                elem_id="size")
                with gr.Row():
                    button = gr.Button("Segment", variant="primary", elem_id="run")
                    stop = gr.Button("Stop", variant="stop", elem_id="stop")
            with gr.Column():
                status = gr.Textbox(label="status", interactive=False, elem_id=STATUS_ID)
                bar = gr.HTML(progress_bar(0.0), elem_id="progress")
                shown = gr.Image(label="overlay", interactive=False, elem_id="overlay")
                result = gr.Video(label="result", interactive=False, visible=False, elem_id="result-video")
                slider = gr.Slider(0, 1, step=1, value=0, label="frame", interactive=False, elem_id="frame")
                files = gr.File(label="downloads: overlay video, masks (zip), probabilities (zip)",
                                file_count="multiple", interactive=False, elem_id="downloads")
        job = gr.State(None)
        for source in (upload, example):
            source.change(page.preview, [upload, example], clip, show_progress="hidden")
        for source in (upload, example, size):
            source.change(page.describe, [upload, example, size], info, show_progress="hidden")
        button.click(run, [upload, example, size], [status, bar, shown, result, slider, files, job],
                     concurrency_limit=1, concurrency_id="segment", show_progress="hidden")
        stop.click(page.stop, [job], None, queue=False)
        slider.release(page.scrub, [slider, job], shown, show_progress="hidden")
    return blocks.queue(default_concurrency_limit=1, max_size=16)
