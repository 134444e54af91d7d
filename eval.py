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
import shutil
import sys
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Iterable, Iterator

import cv2
import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader
from tqdm import tqdm

from config import MIN_FRAME_SIDE, Config
from dataloaders.loader import WORKER_START_METHOD
from dataloaders.eval_datasets import EvalFrames, EvalSequence, davis2016_sequences
from dataloaders.transforms import eval_preprocess
from networks.lsta import LSTA
from utils.checkpoint import CheckpointError, load_lsta_weights, read_checkpoint
from utils.checkpointer import checkpoints_newest_first
from utils.errors import user_message
from utils.cli import add_config_args, load_config, save_run_config
from utils.image_io import (DamagedVideoError, iter_video_frames, read_binary_mask, read_image, video_fps, write_image,
                            write_palette_png)
from utils.memory_window import predict_video
from utils.metrics import format_table, score_results
from utils.overlay import overlay
from utils.precision import set_float32_precision
from utils.timing import SectionTimer

RESULTS_RECORD = "config.json"  # written last: its presence marks a finished evaluation


def build_model(cfg: Config, ckpt_path: str, device: torch.device) -> LSTA:
    """LSTA with every entry loaded from `ckpt_path`, in eval mode on `device`."""
    model = LSTA(cfg)
    load_lsta_weights(model, ckpt_path, min_fraction=1.0)
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
                   max_side: int | None, accept_partial: bool = False) -> SectionTimer:
    """Masks, overlays and an overlay .mp4 for a user's video file or folder of frames."""
    timer = SectionTimer(device)
    frames: dict[int, np.ndarray] = {}  # raw frames waiting for their mask (at most one window)
    writer, writes = ThreadPoolExecutor(2), []

    damage: list[DamagedVideoError] = []  # a damaged file: raised once every decoded frame has its mask

    def batches() -> Iterator[torch.Tensor]:
        pending, first_shape = [], None
        decoded = enumerate(iter_video_frames(video, max_side, accept_partial))
        while True:
            try:
                index, frame = next(decoded)
            except StopIteration:
                break
            except DamagedVideoError as err:
                damage.append(err)
                break
            first_shape = first_shape or frame.shape
            if frame.shape != first_shape:
                raise ValueError(f"frame {index} of {video} is {frame.shape[1]}x{frame.shape[0]}, unlike the "
                                 f"frames before it: all frames of a video must have one size")
            frames[index] = frame
            pending.append(eval_preprocess(frame, cfg.TEST_MAX_SIZE, f"frame {index} of {video}"))
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
    if damage:
        raise damage[0]
    return timer


def report_speed(timer: SectionTimer, device: torch.device, input_size: str, precision: str) -> None:
    """Frames/s of the model alone, split into encoder and head, with the conditions measured under."""
    n = max(timer.frames, 1)
    enc, head, post = (timer.seconds.get(k, 0.0) for k in ("encoder", "head", "post"))
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else f"CPU, {torch.get_num_threads()} threads"
    print(f"speed over {timer.frames} frames ({input_size}, {precision}, {device} [{name}]): "
          f"encoder {1000 * enc / n:.1f} ms/frame, head {1000 * head / n:.1f} ms/frame, "
          f"inference {n / max(enc + head, 1e-9):.2f} FPS; resize+argmax to original size "
          f"{1000 * post / n:.1f} ms/frame (not in FPS)")


def _resolution(cfg: Config) -> str:
    return "Full-Resolution" if cfg.TEST_DATASET_FULL_RESOLUTION else "480p"


def _chain(first: list, rest: Iterable) -> Iterator:
    yield from first
    yield from rest


def resolve_checkpoint(cfg: Config, ckpt_path: str | None) -> tuple[str, str]:
    """(weights file, its tag for the results folder): --ckpt_path, else TEST_CKPT_PATH, else the
    newest checkpoint of EXP_NAME. The tag is step_<N> for this project's checkpoints, else the file's name."""
    path = ckpt_path or cfg.TEST_CKPT_PATH
    if not path:
        found = checkpoints_newest_first(cfg.DIR_CKPT)
        if not found:
            raise CheckpointError(f"no checkpoint to evaluate: {cfg.DIR_CKPT} (EXP_NAME {cfg.EXP_NAME}) holds no "
                                  f"save_step_*.pth; train first, or pass --ckpt_path FILE (e.g. best_LSTA.pth, "
                                  f"the authors' weights)")
        path = found[0][1]
    try:
        ckpt = read_checkpoint(path, "LSTA weights", mmap=True)
    except CheckpointError as err:
        raise CheckpointError(f"{err}; the authors' released weights, best_LSTA.pth, go in the project root "
                              f"(eval.sh's default), or pass --ckpt_path to one of your log/<exp>/ckpt/*.pth") from None
    step = ckpt.get("step") if isinstance(ckpt, dict) else None
    tag = f"step_{step}" if isinstance(step, int) else os.path.splitext(os.path.basename(path))[0]
    return path, tag


def prepare_results_folder(out_dir: str, overwrite: bool) -> None:
    """Refuse a results folder that already holds files, unless --overwrite and it is one of ours."""
    if not os.path.isdir(out_dir) or not os.listdir(out_dir):
        return
    ours = os.path.isfile(os.path.join(out_dir, RESULTS_RECORD))
    if not overwrite:
        raise FileExistsError(f"results folder {out_dir} already holds files (an earlier run's masks would mix with "
                              f"these); choose another --out, or pass --overwrite to replace "
                              f"{'that run' if ours else 'them'}")
    if not ours:
        raise FileExistsError(f"results folder {out_dir} holds files but no {RESULTS_RECORD} of an evaluation; "
                              f"--overwrite only replaces results of this project: choose another --out")
    shutil.rmtree(out_dir)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_config_args(parser)
    parser.add_argument("--ckpt_path", default=None,
                        help="LSTA weights (default: TEST_CKPT_PATH if set, else the newest checkpoint of EXP_NAME)")
    parser.add_argument("--out", default=None,
                        help="results folder (default: log/<exp>/eval/<dataset>-<split>/<step_N or weights name>)")
    parser.add_argument("--overwrite", action="store_true", help="replace the results of an earlier evaluation in --out")
    parser.add_argument("--score_only", metavar="RESULTS_DIR", default=None,
                        help="score existing masks against DAVIS-2016 ground truth and exit")
    parser.add_argument("--video", default=None, help="segment a video file or a folder of frames")
    parser.add_argument("--max_side", type=int, default=None, help="--video: shrink frames to this longer side")
    parser.add_argument("--accept_partial_video", action="store_true",
                        help="--video: keep the frames a damaged video file decodes instead of stopping")
    parser.add_argument("--overlays", action="store_true", help="DAVIS: also write overlay images per sequence")
    args = parser.parse_args()
    cfg = load_config(args)
    try:
        if args.max_side is not None and args.max_side < MIN_FRAME_SIDE:
            raise ValueError(f"--max_side {args.max_side} is below {MIN_FRAME_SIDE}, the smallest frame side the "
                             f"network accepts")
        sequences = None if args.video else davis2016_sequences(cfg.DIR_DAVIS, cfg.TEST_DATASET_SPLIT,
                                                                _resolution(cfg))
        if args.score_only:
            figures, rows = score_results(args.score_only, sequences)
            print(format_table(figures, rows))
            print(f"wrote {args.score_only}/global_results-val.csv and per-sequence_results-val.csv")
            return
        if cfg.TEST_FLIP or list(cfg.TEST_MULTISCALE) != [1]:  # also refused by the config's rules
            raise ValueError("TEST_FLIP / TEST_MULTISCALE are not implemented: use TEST_FLIP False, TEST_MULTISCALE [1]")
        device = torch.device(f"cuda:{cfg.DEVICE_ID}" if str(cfg.DEVICE) == "cuda" else cfg.DEVICE)
        precision = set_float32_precision(cfg.DEVICE_ALLOW_TF32) if device.type == "cuda" else "float32"
        ckpt_path, tag = resolve_checkpoint(cfg, args.ckpt_path)
        name = os.path.basename(args.video.rstrip("/")) if args.video else f"{cfg.TEST_DATASET}-{cfg.TEST_DATASET_SPLIT}"
        out_dir = args.out or os.path.join(cfg.DIR_EVALUATION, name, tag)
        prepare_results_folder(out_dir, args.overwrite)
        print(f"evaluating {ckpt_path} ({tag}); results in {out_dir}")
        model = build_model(cfg, ckpt_path, device)
        with torch.inference_mode():
            if args.video:
                timer = evaluate_video(cfg, model, device, args.video, out_dir, args.max_side, args.accept_partial_video)
                report_speed(timer, device, "frames resized to 16k+1 sides", precision)
            else:
                timer = evaluate_davis(cfg, model, device, sequences, out_dir, args.overlays)
                report_speed(timer, device, f"long edge ≤ {cfg.TEST_MAX_SIZE}, sides 16k+1", precision)
        if not args.video:
            figures, rows = score_results(out_dir, sequences)
            print(format_table(figures, rows))
            print(f"masks and global_results-val.csv / per-sequence_results-val.csv in {out_dir}")
        save_run_config(cfg, os.path.join(out_dir, RESULTS_RECORD), checkpoint=ckpt_path)  # written on success only
    except (CheckpointError, OSError, RuntimeError, ValueError) as err:
        sys.exit(f"error: {user_message(err)}")


if __name__ == "__main__":
    main()
