"""What every evaluation run shares: the model its checkpoint records, one segmenter, the precision, the record.

A benchmark run (evaluation/benchmark_run.py) and a video run (evaluation/video_run.py) each start
one EvalSession: the weights loaded once, the VideoSegmenter built once (rank 0 first under
torchrun, so that an onnxruntime export is made once), the timer of the model's sections, and the
record every results folder gets (`eval.json`): checkpoint and digest, settings, architecture,
backend and precision.
"""
from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np
import torch

from config import Config, settings_record
from evaluation.results_folder import ResultsFolder
from evaluation.sharding import on_main_then_share
from inference.checkpoint_settings import ChosenCheckpoint
from inference.segmenter import VideoSegmenter
from networks.lsta import LSTA
from networks.weights import load_lsta
from utils.distributed import DistInfo
from utils.files import file_digest, write_json
from utils.precision import set_float32_precision
from utils.timing import SectionTimer

SETTINGS_RECORD = "config.json"  # the resolved settings, written when the evaluation has finished
log = logging.getLogger("lsta.eval")


@dataclass
class EvalSession:
    """The loaded model and its segmenter for one evaluation run, and how they compute."""
    cfg: Config
    checkpoint: ChosenCheckpoint
    model: LSTA
    segmenter: VideoSegmenter
    timer: SectionTimer
    precision: str   # e.g. "float32, onnxruntime backend"; in every log line and record of results
    checkpoint_sha256: str  # the weights file's digest, read once: every results folder records it

    @classmethod
    def start(cls, cfg: Config, checkpoint: ChosenCheckpoint, world: DistInfo,
              calibration: Callable[[], list[np.ndarray]] = list) -> "EvalSession":
        """Load the weights and build the segmenter (on rank 0 first: it makes a missing export once).

        `calibration()` gives TEST_PRECISION int8 its frames (what is evaluated, the same on every
        rank), unless TEST_INT8_CALIBRATION names a folder.
        """
        device = world.device
        precision = (set_float32_precision(cfg.DEVICE_ALLOW_TF32 or cfg.TEST_PRECISION == "tf32")
                     if device.type == "cuda" else "float32")
        if cfg.TEST_PRECISION in ("bf16", "fp16"):
            precision = f"{cfg.TEST_PRECISION} autocast"
        elif cfg.TEST_PRECISION == "int8":
            precision = "int8 (static quantization)"
        # Frame sizes are fixed within a video: cuDNN's autotuner picks each size's fastest kernels once.
        torch.backends.cudnn.benchmark = device.type == "cuda"
        model, _ = load_lsta(checkpoint.path, cfg)
        timer = SectionTimer(device)
        def build() -> VideoSegmenter:
            segmenter = VideoSegmenter.from_config(model, cfg, device, timer.measure)
            if segmenter.backend.needs_calibration:
                segmenter.calibrate(calibration())
            return segmenter

        built: list[VideoSegmenter] = []
        on_main_then_share(world, lambda: built.append(build()))
        segmenter = built[0] if built else build()
        return cls(cfg, checkpoint, model, segmenter, timer, f"{precision}, {segmenter.backend.name} backend",
                   file_digest(checkpoint.path))

    def record(self, **extra: Any) -> dict[str, Any]:
        """What a results folder records of this run (eval.json), with `extra` (the benchmark, the video)."""
        return {"checkpoint": self.checkpoint.path, "checkpoint_sha256": self.checkpoint_sha256,
                "settings": self.cfg.to_dict(), "model": self.model.args.to_record(),
                "backend": self.segmenter.backend.name, "precision": self.precision, **extra}

    def finish(self, folder: ResultsFolder, benchmark: str, files: list[str]) -> None:
        """Record the tables, report and settings file as written, then mark the evaluation complete."""
        settings = os.path.join(folder.path, SETTINGS_RECORD)
        write_json(settings, settings_record(self.cfg, checkpoint=self.checkpoint.path, benchmark=benchmark,
                                             precision=self.precision))
        folder.add_files(files + [settings])
        folder.complete()

    def report_speed(self) -> None:
        """Frames/s of the model alone, split into encoder and head, with the conditions measured under."""
        timer, device = self.timer, self.segmenter.device
        n = max(timer.frames, 1)
        enc, head, post = (timer.seconds.get(k, 0.0) for k in ("encoder", "head", "post"))
        name = (torch.cuda.get_device_name(device) if device.type == "cuda"
                else f"CPU, {torch.get_num_threads()} threads")
        views = len(self.segmenter.views)
        log.info(f"speed over {timer.frames} frames ({self.precision}, {views} view{'s' if views > 1 else ''} per "
                 f"frame, {device} [{name}]): encoder {1000 * enc / n:.1f} ms/frame, head {1000 * head / n:.1f} "
                 f"ms/frame, inference {n / max(enc + head, 1e-9):.2f} FPS; resize+argmax to original size "
                 f"{1000 * post / n:.1f} ms/frame (not in FPS)")
