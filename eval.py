"""Evaluate LSTA: DAVIS-2016 val masks + J/F, scoring alone, or a user's own video.

    python eval.py --ckpt_path best_LSTA.pth [--out DIR] [--opts KEY VALUE ...]
    python eval.py --score_only RESULTS_DIR [--opts DIR_DAVIS ROOT]
    python eval.py --video clip.mp4 --ckpt_path best_LSTA.pth --out DIR [--max_side 854]

Masks are predicted for every frame, frame 0 included (unsupervised: no ground truth is read
while predicting), with the authors' preprocessing and memory-window schedule. Speed is the model
alone: after warm-up, synchronised, disk I/O and scoring excluded.
"""
from __future__ import annotations

import argparse
import os
import sys
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Iterable, Iterator

import cv2
import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader
from tqdm import tqdm

from config import Config
from dataloaders.loader import WORKER_START_METHOD
from dataloaders.eval_datasets import EvalFrames, EvalSequence, davis2016_sequences
from dataloaders.transforms import eval_preprocess
from networks.lsta import LSTA
from utils.checkpoint import CheckpointError, load_lsta_weights
from utils.cli import add_config_args, load_config, save_run_config
from utils.image_io import (iter_video_frames, read_binary_mask, read_image, video_fps, write_image,
                            write_palette_png)
from utils.memory_window import predict_video
from utils.metrics import format_table, score_results
from utils.overlay import overlay
from utils.timing import SectionTimer


def build_model(cfg: Config, ckpt_path: str, device: torch.device) -> LSTA:
    """LSTA with every entry loaded from `ckpt_path`, in eval mode on `device`."""
    model = LSTA(cfg)
    try:
        load_lsta_weights(model, ckpt_path, min_fraction=1.0)
    except CheckpointError as err:
        raise CheckpointError(f"{err}; the authors' released weights, best_LSTA.pth, go in the project root "
                              f"(TEST_CKPT_PATH); or pass --ckpt_path to one of your log/<exp>/ckpt/*.pth") from None
    return model.to(device).eval()


def to_mask(logits: torch.Tensor, size: tuple[int, int]) -> np.ndarray:
    """Logits (1,2,h,w) → uint8 mask (0/1) at the original frame size (bilinear, align_corners=True)."""
    logits = F.interpolate(logits, size=size, mode="bilinear", align_corners=True)
    return logits.argmax(dim=1)[0].to(torch.uint8).cpu().numpy()


def warm_up(model: LSTA, batch: torch.Tensor) -> None:
    """One untimed pass so that timings exclude lazy initialisation and autotuning."""
    caches = model.cache_frames(model.encode(batch)).split()
    model.segment_cached(caches[0], caches[:1], caches[-1])


def _collate(items: list) -> tuple[torch.Tensor, list, list]:
    return torch.stack([i[0] for i in items]), [i[1] for i in items], [i[2] for i in items]


def evaluate_davis(cfg: Config, model: LSTA, device: torch.device, sequences: list[EvalSequence],
                   out_dir: str, overlays: bool = False) -> SectionTimer:
    """Write DAVIS-2016 masks for every sequence into out_dir/<seq>/<frame>.png; returns the timings.

    With `overlays`, also out_dir/overlays/<seq>/<frame>.jpg (written off the timed path).
    """
    timer = SectionTimer(device)
    frames_done = 0
    writer = ThreadPoolExecutor(2)
    bar = tqdm(sequences, desc="DAVIS-2016 val", dynamic_ncols=True)
    for seq_index, seq in enumerate(bar):
        loader = DataLoader(EvalFrames(seq.images, cfg.TEST_MAX_SIZE), batch_size=cfg.TEST_ENCODE_BATCH,
                            num_workers=cfg.DATA_WORKERS, collate_fn=_collate, pin_memory=device.type == "cuda",
                            multiprocessing_context=WORKER_START_METHOD if cfg.DATA_WORKERS > 0 else None)
        sizes, names, writes = [], [], []

        def batches() -> Iterator[torch.Tensor]:
            for images, batch_sizes, batch_names in loader:
                sizes.extend(batch_sizes)
                names.extend(batch_names)
                yield images.to(device, non_blocking=True)

        stream: Iterator[torch.Tensor] = batches()
        if seq_index == 0:
            first = next(stream)
            warm_up(model, first)
            stream = _chain([first], stream)
        for t, logits in predict_video(model, stream, cfg.MODEL_MAX_MEM, timer.measure):
            with timer.measure("post"):
                mask = to_mask(logits, sizes[t])
            if t == 0 and cfg.TEST_COPY_FIRST_FRAME_GT:  # the authors' semi-supervised copy, by request
                mask = read_binary_mask(seq.masks[0]).astype(np.uint8)
            writes.append(writer.submit(write_palette_png, os.path.join(out_dir, seq.name, names[t] + ".png"), mask))
            if overlays:
                writes.append(writer.submit(_write_overlay, seq.images[t], mask,
                                            os.path.join(out_dir, "overlays", seq.name, names[t] + ".jpg")))
            frames_done += 1
        _finish(writes)
        bar.set_postfix(frames=frames_done)
    writer.shutdown(wait=True)
    timer.frames = frames_done
    return timer


def _write_overlay(image_path: str, mask: np.ndarray, out_path: str) -> None:
    write_image(out_path, overlay(read_image(image_path), mask))


def _finish(writes: list[Future]) -> None:
    """Wait for queued writes and re-raise the first failure (a full disk must not pass silently)."""
    for future in writes:
        future.result()
    writes.clear()


def evaluate_video(cfg: Config, model: LSTA, device: torch.device, video: str, out_dir: str,
                   max_side: int | None) -> SectionTimer:
    """Masks, overlays and an overlay .mp4 for a user's video file or folder of frames."""
    timer = SectionTimer(device)
    frames: dict[int, np.ndarray] = {}  # raw frames waiting for their mask (at most one window)
    writer, writes = ThreadPoolExecutor(2), []

    def batches() -> Iterator[torch.Tensor]:
        pending, first_shape = [], None
        for index, frame in enumerate(iter_video_frames(video, max_side)):
            first_shape = first_shape or frame.shape
            if frame.shape != first_shape:
                raise ValueError(f"frame {index} of {video} is {frame.shape[1]}x{frame.shape[0]}, unlike the "
                                 f"frames before it: all frames of a video must have one size")
            frames[index] = frame
            pending.append(eval_preprocess(frame, cfg.TEST_MAX_SIZE))
            if len(pending) == cfg.TEST_ENCODE_BATCH:
                yield torch.stack(pending).to(device)
                pending = []
        if pending:
            yield torch.stack(pending).to(device)

    stream = batches()
    first = next(stream)
    warm_up(model, first)
    video_writer = None
    mp4_path = os.path.join(out_dir, "overlay.mp4")
    done = 0
    bar = tqdm(desc=os.path.basename(video.rstrip("/")), unit="frame", dynamic_ncols=True)
    for t, logits in predict_video(model, _chain([first], stream), cfg.MODEL_MAX_MEM, timer.measure):
        frame = frames.pop(t)
        with timer.measure("post"):
            mask = to_mask(logits, frame.shape[:2])
        shown = overlay(frame, mask)
        writes.append(writer.submit(write_palette_png, os.path.join(out_dir, "masks", f"{t:05d}.png"), mask))
        writes.append(writer.submit(write_image, os.path.join(out_dir, "overlays", f"{t:05d}.jpg"), shown))
        if len(writes) > 64:
            _finish(writes)
        if video_writer is None:
            os.makedirs(out_dir, exist_ok=True)
            video_writer = cv2.VideoWriter(mp4_path, cv2.VideoWriter_fourcc(*"mp4v"), video_fps(video),
                                           (frame.shape[1], frame.shape[0]))
        video_writer.write(shown)
        done += 1
        bar.update(1)
    bar.close()
    if video_writer is not None:
        video_writer.release()
    _finish(writes)
    writer.shutdown(wait=True)
    timer.frames = done
    print(f"wrote {done} masks to {out_dir}/masks, overlays to {out_dir}/overlays and {mp4_path}")
    return timer


def report_speed(timer: SectionTimer, device: torch.device, input_size: str) -> None:
    """Frames/s of the model alone, split into encoder and head, with the conditions measured under."""
    n = max(timer.frames, 1)
    enc, head, post = (timer.seconds.get(k, 0.0) for k in ("encoder", "head", "post"))
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else f"CPU, {torch.get_num_threads()} threads"
    print(f"speed over {timer.frames} frames ({input_size}, float32, {device} [{name}]): "
          f"encoder {1000 * enc / n:.1f} ms/frame, head {1000 * head / n:.1f} ms/frame, "
          f"inference {n / max(enc + head, 1e-9):.2f} FPS; resize+argmax to original size "
          f"{1000 * post / n:.1f} ms/frame (not in FPS)")


def _resolution(cfg: Config) -> str:
    return "Full-Resolution" if cfg.TEST_DATASET_FULL_RESOLUTION else "480p"


def _chain(first: list, rest: Iterable) -> Iterator:
    yield from first
    yield from rest


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_config_args(parser)
    parser.add_argument("--ckpt_path", default=None, help="LSTA weights (default: TEST_CKPT_PATH)")
    parser.add_argument("--out", default=None, help="results folder (default: log/<exp>/eval/davis2016-val)")
    parser.add_argument("--score_only", metavar="RESULTS_DIR", default=None,
                        help="score existing masks against DAVIS-2016 ground truth and exit")
    parser.add_argument("--video", default=None, help="segment a video file or a folder of frames")
    parser.add_argument("--max_side", type=int, default=None, help="--video: shrink frames to this longer side")
    parser.add_argument("--overlays", action="store_true", help="DAVIS: also write overlay images per sequence")
    args = parser.parse_args()
    cfg = load_config(args)
    try:
        sequences = None if args.video else davis2016_sequences(cfg.DIR_DAVIS, cfg.TEST_DATASET_SPLIT[0],
                                                                _resolution(cfg))
        if args.score_only:
            figures, rows = score_results(args.score_only, sequences)
            print(format_table(figures, rows))
            print(f"wrote {args.score_only}/global_results-val.csv and per-sequence_results-val.csv")
            return
        if cfg.TEST_DATASET != "davis2016" and not args.video:
            raise ValueError(f"TEST_DATASET {cfg.TEST_DATASET!r} is not implemented; this evaluator does davis2016")
        if cfg.TEST_FLIP or list(cfg.TEST_MULTISCALE) != [1]:
            raise ValueError("TEST_FLIP / TEST_MULTISCALE are not implemented (nor are they by the authors): "
                             "use TEST_FLIP False, TEST_MULTISCALE [1]")
        device = torch.device(f"cuda:{cfg.DEVICE_ID}" if str(cfg.DEVICE) == "cuda" else cfg.DEVICE)
        ckpt_path = args.ckpt_path or cfg.TEST_CKPT_PATH
        model = build_model(cfg, ckpt_path, device)
        if args.video:
            out_dir = args.out or os.path.join(cfg.DIR_EVALUATION, os.path.basename(args.video.rstrip("/")))
            save_run_config(cfg, os.path.join(out_dir, "config.json"))
            with torch.inference_mode():
                timer = evaluate_video(cfg, model, device, args.video, out_dir, args.max_side)
            report_speed(timer, device, "frames resized to 16k+1 sides")
            return
        out_dir = args.out or os.path.join(cfg.DIR_EVALUATION, f"{cfg.TEST_DATASET}-{cfg.TEST_DATASET_SPLIT[0]}")
        save_run_config(cfg, os.path.join(out_dir, "config.json"))
        with torch.inference_mode():
            timer = evaluate_davis(cfg, model, device, sequences, out_dir, args.overlays)
        report_speed(timer, device, f"long edge ≤ {cfg.TEST_MAX_SIZE}, sides 16k+1")
        figures, rows = score_results(out_dir, sequences)
        print(format_table(figures, rows))
        print(f"masks and global_results-val.csv / per-sequence_results-val.csv in {out_dir}")
    except (CheckpointError, FileNotFoundError, ValueError) as err:
        sys.exit(f"error: {err}")


if __name__ == "__main__":
    main()
