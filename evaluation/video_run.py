"""A video run: masks, overlays, an overlay video and a report for one video file or folder of frames (`--video`).

    evaluate_video(cfg, VideoRun("clip.mp4", max_side=854), checkpoint, world)

The results folder (default `log/<exp>/eval/<video name>/<tag>/`) is owned like a benchmark's;
frames are named after their files (a folder) or numbered 00000... (a video file).
"""
from __future__ import annotations

import itertools
import logging
import os

import numpy as np
from tqdm import tqdm

from config import Config
from evaluation.options import VideoRun
from evaluation.report import write_video_report
from evaluation.results_folder import ResultsFolder
from evaluation.session import EvalSession
from inference.backends.quantization import CALIBRATION_FRAMES
from inference.checkpoint_settings import ChosenCheckpoint
from inference.progress import SegmentProgress
from inference.results import ResultWriter, segment_and_write
from utils.distributed import DistInfo
from utils.errors import DataError, SettingError, UserError
from utils.image_io import DamagedVideoError, iter_video_frames, video_fps
from utils.names import control_characters

log = logging.getLogger("lsta.eval")
OVERLAY_VIDEO = "overlay.mp4"


def video_name(video: str) -> str:
    """The name a video's results go under: its file or folder name; one error for a name no folder can carry."""
    name = os.path.basename(video.rstrip("/"))
    controls = control_characters(video)
    if controls:
        raise DataError(f"--video {video!r}: the path holds control characters ({', '.join(controls)}); rename it")
    return name


def warm_up_for_video(session: EvalSession, video: str, max_side: int | None) -> None:
    """An untimed pass at the video's frame size, the size cuDNN autotuning and TEST_COMPILE specialise
    on; whatever is wrong with the video is left for the run itself to report."""
    blank = np.zeros((64, 64, 3), np.uint8)
    try:
        first = next(iter_video_frames(video, max_side, accept_partial=True), None)
        session.segmenter.warm_up(first if first is not None else blank)
    except UserError:
        session.segmenter.warm_up(blank)


def segment_video(session: EvalSession, run: VideoRun, folder: ResultsFolder) -> list[str]:
    """Masks, overlays, the overlay video (and probability maps) of the video; returns the report's files."""
    out_dir = folder.path
    writer = ResultWriter(os.path.join(out_dir, "masks"), os.path.join(out_dir, "probabilities") if run.save_probs
                          else None, os.path.join(out_dir, "overlays"), os.path.join(out_dir, OVERLAY_VIDEO),
                          video_fps(run.video))
    bar = tqdm(desc=video_name(run.video), unit="frame", dynamic_ncols=True)
    areas: list[float] = []  # the object's share of each frame, for the report
    names: list[str] = []

    def show(progress: SegmentProgress) -> None:  # the total from the first frame; the first window as it fills
        bar.total = progress.total
        bar.set_postfix_str("" if progress.done else f"encoding the first window: {progress.encoded} of "
                            f"{min(progress.window, progress.total or progress.window)}", refresh=False)

    try:
        for frame in segment_and_write(session.segmenter, run.video, writer, max_side=run.max_side,
                                       accept_partial=run.accept_partial, progress=show):
            areas.append(float(frame.mask.mean()))
            names.append(frame.name)
            session.timer.frames += 1
            bar.update(1)
    finally:
        bar.close()
        folder.add_files(writer.written)
        log.info(f"wrote {session.timer.frames} masks to {out_dir}/masks, overlays to {out_dir}/overlays and "
                 f"{out_dir}/{OVERLAY_VIDEO}")
    overlays = [os.path.join(out_dir, "overlays", f"{name}.jpg") for name in names]
    return write_video_report(out_dir, overlays, areas) if areas else []


def evaluate_video(cfg: Config, run: VideoRun, checkpoint: ChosenCheckpoint, world: DistInfo) -> str | None:
    """Segment `run.video` into its results folder; returns its report page (None when no frame decoded)."""
    if world.world_size > 1:
        raise SettingError("--video runs in one process: start eval.py without torchrun")
    name = video_name(run.video)
    folder = ResultsFolder(run.out or os.path.join(cfg.DIR_EVALUATION, name, checkpoint.tag), [run.video])
    folder.check_place()
    folder.check_mode("overwrite" if run.mode == "resume" else run.mode)
    log.info(f"segmenting {run.video} with {checkpoint.path} ({checkpoint.tag}); results in {folder.path}")
    session = EvalSession.start(cfg, checkpoint, world, lambda: list(itertools.islice(
        iter_video_frames(run.video, run.max_side, accept_partial=True), CALIBRATION_FRAMES)))
    # A video is redone whole: --resume (after a damaged file, with --accept_partial_video) redoes it.
    folder.open("overwrite" if run.mode == "resume" else run.mode, session.record(benchmark="video", video=run.video))
    try:
        warm_up_for_video(session, run.video, run.max_side)
        try:
            pages = segment_video(session, run, folder)
        except DamagedVideoError as err:
            raise DamagedVideoError(f"{err}; to keep them, rerun with --accept_partial_video --resume") from None
        session.finish(folder, "video", pages)
    finally:
        folder.close()
    log.info(f"overlay video: {os.path.join(folder.path, OVERLAY_VIDEO)}")
    log.info(f"report: {pages[-1] if pages else 'none (no frame decoded)'}")
    session.report_speed()
    return pages[-1] if pages else None
