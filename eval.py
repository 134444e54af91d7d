"""Evaluate LSTA on the benchmarks of the field, or segment your own videos.

    python eval.py [--dataset davis2016|davis2017|fbms|yto|longvideos|segtrackv2|visal|davsod|youtubevos]
    python eval.py --dataset all                 # every benchmark whose data is present + a summary table
    python eval.py --dataset folder --root DIR   # every video under DIR (scored where it has Annotations/)
    python eval.py --video clip.mp4 [--max_side 854]
    python eval.py --score_only RESULTS_DIR [--dataset NAME]

Weights: --ckpt_path, else TEST_CKPT_PATH, else the newest checkpoint of EXP_NAME. Every frame is
predicted, frame 0 included (unsupervised: no ground truth is read while predicting), with the
authors' preprocessing and window schedule (inference/). The protocols are in docs/evaluation.md.
Speed is the model alone: after warm-up, synchronised, disk I/O and scoring excluded.
"""
from __future__ import annotations

import argparse
import os
import shutil
import sys

import numpy as np
import torch
from tqdm import tqdm

from config import MIN_FRAME_SIDE, Config
from dataloaders.eval_datasets import EvalSequence
from inference.benchmarks import (BENCHMARKS, FOLDER, PROBABILITIES, Benchmark, BenchmarkResult, format_summary,
                                  mask_folder, scorable, score)
from inference.results import ResultWriter
from inference.segmenter import VideoSegmenter
from networks.lsta import LSTA
from utils.checkpoint import CheckpointError, load_lsta_weights, read_checkpoint
from utils.checkpointer import checkpoints_newest_first
from utils.cli import add_config_args, load_config, save_run_config
from utils.errors import user_message
from utils.image_io import read_binary_mask, read_image, video_fps
from utils.metrics import write_csv
from utils.precision import set_float32_precision
from utils.timing import SectionTimer

RESULTS_RECORD = "config.json"  # written last: its presence marks a finished evaluation


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


def benchmarks_to_run(name: str, cfg: Config, root: str | None) -> list[tuple[Benchmark, str]]:
    """(benchmark, data root) pairs for --dataset NAME, `all` (those whose data is present) or `folder`."""
    if name == "folder":
        if not root:
            raise ValueError("--dataset folder needs --root DIR, the folder that holds the videos")
        return [(FOLDER, root)]
    if name == "all":
        chosen = [(b, getattr(cfg, b.root_key)) for b in BENCHMARKS.values()]
        for bench, path in chosen:
            if not os.path.isdir(path):
                print(f"skipping {bench.name}: {bench.root_key} {path} not found")
        chosen = [(b, p) for b, p in chosen if os.path.isdir(p)]
        if not chosen:
            raise FileNotFoundError("no benchmark data found (see data/README.md for where each goes)")
        return chosen
    if name not in BENCHMARKS:
        raise ValueError(f"--dataset {name!r}: choose from {', '.join(list(BENCHMARKS) + ['all', 'folder'])}")
    bench = BENCHMARKS[name]
    return [(bench, root or getattr(cfg, bench.root_key))]


def results_name(bench: Benchmark, cfg: Config) -> str:
    """The results folder's name: the benchmark, with the split for DAVIS (davis2016-val)."""
    return f"{bench.name}-{cfg.TEST_DATASET_SPLIT}" if bench.name.startswith("davis") else bench.name


def run_benchmark(cfg: Config, segmenter: VideoSegmenter, bench: Benchmark, sequences: list[EvalSequence],
                  out_dir: str, probabilities: bool, overlays: bool, timer: SectionTimer) -> None:
    """Segment every sequence and write its masks (and probability maps, overlays) under `out_dir`."""
    bar = tqdm(sequences, desc=bench.name, dynamic_ncols=True)
    for seq in bar:
        writer = ResultWriter(mask_folder(bench, out_dir, seq.name),
                              os.path.join(out_dir, PROBABILITIES, seq.name) if probabilities else None,
                              os.path.join(out_dir, "overlays", seq.name) if overlays else None)
        names = seq.frame_names if seq.images else None
        try:
            for frame in segmenter.segment(seq.video or seq.images, name=f"{bench.name} sequence {seq.name!r}"):
                name = names[frame.index] if names else f"{frame.index:05d}"
                mask = None
                if frame.index == 0 and cfg.TEST_COPY_FIRST_FRAME_GT and name in seq.annotations:
                    mask = read_binary_mask(seq.annotations[name]).astype(np.uint8)  # the authors' copy, by request
                writer.write(name, frame, mask)
                timer.frames += 1
        finally:
            writer.close()
        bar.set_postfix(frames=timer.frames)


def run_video(segmenter: VideoSegmenter, video: str, out_dir: str, max_side: int | None, accept_partial: bool,
              timer: SectionTimer) -> None:
    """Masks, overlays and an overlay .mp4 for a video file or a folder of frames."""
    writer = ResultWriter(os.path.join(out_dir, "masks"), overlays=os.path.join(out_dir, "overlays"),
                          video=os.path.join(out_dir, "overlay.mp4"), fps=video_fps(video))
    bar = tqdm(desc=os.path.basename(video.rstrip("/")), unit="frame", dynamic_ncols=True)
    try:
        for frame in segmenter.segment(video, max_side, accept_partial):
            writer.write(f"{frame.index:05d}", frame)
            timer.frames += 1
            bar.update(1)
    finally:
        bar.close()
        writer.close()
        print(f"wrote {timer.frames} masks to {out_dir}/masks, overlays to {out_dir}/overlays and "
              f"{out_dir}/overlay.mp4")


def report_speed(timer: SectionTimer, device: torch.device, precision: str, views: int) -> None:
    """Frames/s of the model alone, split into encoder and head, with the conditions measured under."""
    n = max(timer.frames, 1)
    enc, head, post = (timer.seconds.get(k, 0.0) for k in ("encoder", "head", "post"))
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else f"CPU, {torch.get_num_threads()} threads"
    print(f"speed over {timer.frames} frames ({precision}, {views} view{'s' if views > 1 else ''} per frame, "
          f"{device} [{name}]): encoder {1000 * enc / n:.1f} ms/frame, head {1000 * head / n:.1f} ms/frame, "
          f"inference {n / max(enc + head, 1e-9):.2f} FPS; resize+argmax to original size "
          f"{1000 * post / n:.1f} ms/frame (not in FPS)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_config_args(parser)
    parser.add_argument("--dataset", default=None, help="benchmark name, all, or folder (default: TEST_DATASET)")
    parser.add_argument("--root", default=None, help="the benchmark's data folder (default: its DIR_* key)")
    parser.add_argument("--ckpt_path", default=None,
                        help="LSTA weights (default: TEST_CKPT_PATH if set, else the newest checkpoint of EXP_NAME)")
    parser.add_argument("--out", default=None,
                        help="results folder (default: log/<exp>/eval/<benchmark>/<step_N or weights name>)")
    parser.add_argument("--overwrite", action="store_true", help="replace the results of an earlier evaluation in --out")
    parser.add_argument("--score_only", metavar="RESULTS_DIR", default=None,
                        help="score existing masks (and probability maps) of one benchmark and exit")
    parser.add_argument("--saliency", action="store_true", help="also score S-measure, max/adaptive F, MAE")
    parser.add_argument("--save_probs", action="store_true", help="write 8-bit foreground probability maps")
    parser.add_argument("--overlays", action="store_true", help="also write overlay images per sequence")
    parser.add_argument("--video", default=None, help="segment a video file or a folder of frames")
    parser.add_argument("--max_side", type=int, default=None, help="--video: shrink frames to this longer side")
    parser.add_argument("--accept_partial_video", action="store_true",
                        help="--video: keep the frames a damaged video file decodes instead of stopping")
    args = parser.parse_args()
    cfg = load_config(args)
    try:
        if args.max_side is not None and args.max_side < MIN_FRAME_SIDE:
            raise ValueError(f"--max_side {args.max_side} is below {MIN_FRAME_SIDE}, the smallest frame side the "
                             f"network accepts")
        chosen = [] if args.video else benchmarks_to_run(args.dataset or cfg.TEST_DATASET, cfg, args.root)
        data = [(scorable(bench, sequences), sequences) for bench, root in chosen
                for sequences in [bench.read(cfg, root)]]
        if args.score_only:
            if len(data) != 1:
                raise ValueError("--score_only scores one benchmark: name it with --dataset")
            bench, sequences = data[0]
            result = score(bench, sequences, args.score_only, cfg.TEST_DATASET_SPLIT, args.saliency)
            print(result.table)
            print(format_summary([result]))
            return
        device = torch.device(f"cuda:{cfg.DEVICE_ID}" if str(cfg.DEVICE) == "cuda" else cfg.DEVICE)
        precision = set_float32_precision(cfg.DEVICE_ALLOW_TF32) if device.type == "cuda" else "float32"
        ckpt_path, tag = resolve_checkpoint(cfg, args.ckpt_path)
        if args.video:
            folders = [args.out or os.path.join(cfg.DIR_EVALUATION, os.path.basename(args.video.rstrip("/")), tag)]
        elif len(data) == 1:
            folders = [args.out or os.path.join(cfg.DIR_EVALUATION, results_name(data[0][0], cfg), tag)]
        else:
            folders = [os.path.join(args.out or cfg.DIR_EVALUATION, results_name(b, cfg), tag) for b, _ in data]
        for folder in folders:
            prepare_results_folder(folder, args.overwrite)
        print(f"evaluating {ckpt_path} ({tag}); results in {', '.join(folders)}")
        model = LSTA(cfg)
        load_lsta_weights(model, ckpt_path, min_fraction=1.0)
        timer = SectionTimer(device)
        segmenter = VideoSegmenter.from_config(model, cfg, device, timer.measure)
        if args.video:
            segmenter.warm_up(np.zeros((64, 64, 3), np.uint8))
            run_video(segmenter, args.video, folders[0], args.max_side, args.accept_partial_video, timer)
            save_run_config(cfg, os.path.join(folders[0], RESULTS_RECORD), checkpoint=ckpt_path)
            report_speed(timer, device, precision, len(segmenter.views))
            return
        results: list[BenchmarkResult] = []
        for (bench, sequences), folder in zip(data, folders):
            if timer.frames == 0 and sequences[0].images:
                segmenter.warm_up(read_image(sequences[0].images[0]))
            saliency = args.saliency or bench.metrics == "saliency"
            run_benchmark(cfg, segmenter, bench, sequences, folder, saliency or args.save_probs, args.overlays, timer)
            result = score(bench, sequences, folder, cfg.TEST_DATASET_SPLIT, args.saliency)
            results.append(result)
            save_run_config(cfg, os.path.join(folder, RESULTS_RECORD), checkpoint=ckpt_path, benchmark=bench.name)
            print(result.table)
            print(f"{bench.name}: results{' and ' + ', '.join(result.files) if result.files else ''} in {folder}")
        report_speed(timer, device, precision, len(segmenter.views))
        print(format_summary(results))
        if len(results) > 1:
            summary = os.path.join(args.out or cfg.DIR_EVALUATION, f"summary-{tag}.csv")
            write_csv(summary, ["benchmark", "measure", "figure", "value"],
                      [{"benchmark": r.name, "measure": r.label, "figure": k, "value": v}
                       for r in results for k, v in r.headline.items()])
            print(f"summary: {summary}")
    except (CheckpointError, OSError, RuntimeError, ValueError) as err:
        sys.exit(f"error: {user_message(err)}")


if __name__ == "__main__":
    main()
