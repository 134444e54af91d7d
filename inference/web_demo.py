"""The web page of `demo.py`: upload a video (or a zip of frames), watch the overlays stream in, download the results.

One engine: every upload runs through `VideoSegmenter.segment`, frame by frame, and every result
is written to disk as it comes (masks, probability maps, overlays, an overlay mp4) by
`ResultWriter`; the page only ever holds the newest overlay, so memory stays flat on long videos.
Uploads queue: one segmentation runs at a time (on a CPU, two would only slow each other).
"""
from __future__ import annotations

import os
import re
import tempfile
import time
import zipfile
from dataclasses import dataclass
from typing import Iterator

import cv2
import numpy as np

from inference.results import ResultWriter, segment_and_write
from inference.segmenter import VideoSegmenter
from utils.errors import DataError, UserError, user_message
from utils.frame_archive import extract_frames
from utils.image_io import DamagedVideoError, read_image, video_fps
from utils.names import natural_key
from utils.overlay import overlay

STATUS_ID = "status"          # the page's one-line status (tests read it)
MAX_ZIP_FRAMES = 20000
STREAM_EVERY_S = 0.1          # the page gets a new overlay at most this often (the rest are on disk)


@dataclass(frozen=True)
class DemoSettings:
    """What the page allows: frame size cap, upload size, bundled clips, where jobs are written."""
    max_side: int = 854
    max_upload_mb: int = 200
    jobs_dir: str = "log/demo"
    examples: tuple[str, ...] = ()
    max_zip_frames: int = MAX_ZIP_FRAMES
    max_zip_expanded_mb: int = 4096   # a zip's frames once extracted: a small upload must not fill the disk


def _zip_folder(folder: str, path: str, inside: str) -> str:
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        for name in sorted(os.listdir(folder)):
            archive.write(os.path.join(folder, name), f"{inside}/{name}")
    return path


def _rgb(image: np.ndarray) -> np.ndarray:
    return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)


@dataclass
class Update:
    """One refresh of the page: status line, newest overlay (RGB), and when done the downloads."""
    status: str
    overlay: np.ndarray | None = None
    frames: int = 0
    downloads: list[str] | None = None


def segment_upload(segmenter: VideoSegmenter, upload: str, settings: DemoSettings) -> Iterator[Update]:
    """Segment an uploaded video file, zip of frames or bundled clip; stream the page's updates."""
    name = re.sub(r"[^\w.\-]", "_", os.path.splitext(os.path.basename(upload))[0]) or "video"
    os.makedirs(settings.jobs_dir, exist_ok=True)
    job = tempfile.mkdtemp(prefix=f"{time.strftime('%Y%m%d-%H%M%S')}-{name}-", dir=settings.jobs_dir)  # never reused
    source = upload
    if upload.lower().endswith(".zip"):
        source = extract_frames(upload, os.path.join(job, "frames"), os.path.basename(upload),
                                settings.max_zip_frames, settings.max_zip_expanded_mb * 2 ** 20)
    masks, overlays = os.path.join(job, "masks", name), os.path.join(job, "overlays")
    writer = ResultWriter(masks, os.path.join(job, "probabilities", name), overlays,
                          os.path.join(job, "overlay.mp4"), video_fps(source))
    count, start, shown_at, damage, last_name = 0, time.perf_counter(), 0.0, None, None
    try:
        for frame in segment_and_write(segmenter, source, writer, max_side=settings.max_side,
                                       name=os.path.basename(upload)):
            count, last_name = count + 1, frame.name
            now = time.perf_counter()
            if now - shown_at >= STREAM_EVERY_S:
                shown_at = now
                fps = count / max(now - start, 1e-9)
                yield Update(f"segmenting: {count} frames, {fps:.1f} frames/s",
                             _rgb(overlay(frame.image, frame.mask)), count)
    except DamagedVideoError as err:
        damage = err
    elapsed = time.perf_counter() - start
    if count == 0:
        raise DataError(f"no frame of {os.path.basename(upload)} could be decoded") from damage
    downloads = [_zip_folder(masks, os.path.join(job, f"{name}_masks.zip"), name),
                 _zip_folder(os.path.join(job, "probabilities", name), os.path.join(job, f"{name}_probabilities.zip"),
                             name),
                 os.path.join(job, "overlay.mp4")]
    last = read_image(os.path.join(overlays, f"{last_name}.jpg"))
    if damage is not None:
        status = (f"damaged file: kept the {count} frames that decoded ({elapsed:.1f} s); the rest of "
                  f"{os.path.basename(upload)} could not be read")
    else:
        status = f"done: {count} frames in {elapsed:.1f} s ({count / max(elapsed, 1e-9):.1f} frames/s)"
    yield Update(status, _rgb(last), count, downloads)


def page_message(err: BaseException, upload: str, jobs_dir: str) -> str:
    """The one line a page shows for an error: the user's file by its name, never the server's paths."""
    message = user_message(err)
    for place in sorted({os.path.abspath(upload), upload}, key=len, reverse=True):
        message = message.replace(place, os.path.basename(upload))
    # A frame extracted from a zip: <jobs>/<job>/frames/<frame> → <frame>
    return re.sub(re.escape(os.path.abspath(jobs_dir)) + r"/[^/\s]+/frames/", "",
                  re.sub(re.escape(jobs_dir.rstrip("/")) + r"/[^/\s]+/frames/", "", message))


def build_demo(segmenter: VideoSegmenter, settings: DemoSettings):
    """The Gradio page (gr.Blocks), queued one job at a time."""
    import gradio as gr

    def run(upload, example, progress=gr.Progress()):
        path = upload or example
        if not path:
            yield "error: upload a video or a zip of frames, or pick a toy clip", None, gr.update(), None, None
            return
        if upload and os.path.getsize(upload) > settings.max_upload_mb * 2 ** 20:
            yield (f"error: {os.path.basename(upload)} is larger than the page's limit of {settings.max_upload_mb} MB",
                   None, gr.update(), None, None)
            return
        try:
            for update in segment_upload(segmenter, path, settings):
                progress(None if update.downloads is None else 1.0, desc=update.status)
                slider = (gr.update(maximum=max(update.frames - 1, 1), value=update.frames - 1, interactive=True)
                          if update.downloads else gr.update())
                job = os.path.dirname(update.downloads[0]) if update.downloads else None
                yield update.status, update.overlay, slider, update.downloads, job
        except (UserError, OSError) as err:  # bad input, a full disk: one line on the page, never a traceback
            yield f"error: {page_message(err, path, settings.jobs_dir)}", None, gr.update(), None, None

    def scrub(index, job):
        if not job or not os.path.isdir(os.path.join(job, "overlays")):
            return None
        names = sorted(os.listdir(os.path.join(job, "overlays")), key=natural_key)  # the frames' own order
        return _rgb(read_image(os.path.join(job, "overlays", names[int(index)]))) if int(index) < len(names) else None

    with gr.Blocks(title="LSTA video object segmentation") as page:
        gr.Markdown("## LSTA: segment the main object of a video\nUpload a video file or a zip of frames, "
                    "or pick a toy clip. No mask is needed: the model finds the object itself.")
        with gr.Row():
            with gr.Column():
                upload = gr.File(label="video or zip of frames", file_types=["video", ".zip", ".avi", ".mp4",
                                                                            ".mov", ".mkv", ".webm"],
                                 elem_id="upload")
                example = gr.Dropdown([(f"toy clip: {os.path.basename(p)}", p) for p in settings.examples], value=None,
                                      label="or a toy clip", elem_id="example")
                button = gr.Button("Segment", variant="primary", elem_id="run")
            with gr.Column():
                status = gr.Textbox(label="status", interactive=False, elem_id=STATUS_ID)
                shown = gr.Image(label="overlay", interactive=False, elem_id="overlay")
                slider = gr.Slider(0, 1, step=1, value=0, label="frame", interactive=False, elem_id="frame")
                files = gr.File(label="downloads: masks (zip), probabilities (zip), overlay video", file_count="multiple",
                                interactive=False, elem_id="downloads")
        job = gr.State(None)
        button.click(run, [upload, example], [status, shown, slider, files, job], concurrency_limit=1)
        slider.release(scrub, [slider, job], shown)
    return page.queue(default_concurrency_limit=1, max_size=16)
