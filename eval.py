"""Evaluate LSTA on the benchmarks of the field, or segment your own videos.

    python eval.py [--dataset davis2016|davis2017|fbms|yto|longvideos|segtrackv2|visal|davsod|youtubevos]
    python eval.py --dataset all                 # every benchmark whose data is present + a summary table
    python eval.py --dataset folder --root DIR   # every video under DIR (scored where it has Annotations/)
    python eval.py --video clip.mp4 [--max_side 854]
    python eval.py --score_only RESULTS_DIR [--dataset NAME]
    python eval.py --compare RESULTS_A RESULTS_B [...] [--out DIR]   # a comparison page
    python eval.py ... --resume | --overwrite    # finish an interrupted evaluation | redo a finished one

Weights: --ckpt_path (a file, or a run's ckpt/ folder: its newest), else TEST_CKPT_PATH, else the
newest checkpoint of EXP_NAME; the model is built as the checkpoint records it (no --preset
needed), and the settings it records (its window) apply unless given. Every frame is
predicted, frame 0 included (unsupervised: no ground truth is read while predicting), with the
authors' preprocessing and window schedule (inference/). The protocols are in docs/evaluation.md.
Speed is the model alone: after warm-up, synchronised, disk I/O and scoring excluded.
"""
from __future__ import annotations

import argparse
import logging
import sys

import torch

from config import ConfigError, add_config_args, config_error_lines, load_config
from evaluation.benchmark_run import evaluate_benchmarks, score_only
from evaluation.benchmarks import format_summary
from evaluation.comparison import compare
from evaluation.options import FLAGS, CompareRun, ScoreOnlyRun, VideoRun, run_from_flags
from evaluation.video_run import evaluate_video
from inference.checkpoint_settings import adopt_checkpoint_settings
from utils.distributed import cleanup, init_distributed
from utils.errors import UserError, out_of_memory_message, user_message
from utils.logger import setup_logger

OUT_OF_MEMORY_ADVICE = "lower TEST_ENCODE_BATCH or TEST_MAX_SIZE, or pass --max_side"
EXIT_INTERRUPTED = 130


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_config_args(parser)
    parser.add_argument("--dataset", default=None, help="benchmark name, all, or folder (default: TEST_DATASET)")
    parser.add_argument("--root", default=None, help="the benchmark's data folder (default: its DIR_* key)")
    parser.add_argument("--ckpt_path", default=None,
                        help="LSTA weights (default: TEST_CKPT_PATH if set, else the newest checkpoint of EXP_NAME)")
    parser.add_argument("--out", default=None,
                        help="results folder (default: log/<exp>/eval/<benchmark>/<step_N or weights name>)")
    parser.add_argument("--overwrite", action="store_true",
                        help="replace an earlier evaluation in --out (only the files it wrote)")
    parser.add_argument("--resume", action="store_true",
                        help="finish an interrupted evaluation in --out: keep its verified sequences, do the rest")
    parser.add_argument("--score_only", metavar="RESULTS_DIR", default=None,
                        help="score existing masks (and probability maps) of one benchmark and exit")
    parser.add_argument("--saliency", action="store_true", help="also score S-measure, max/adaptive F, MAE")
    parser.add_argument("--save_probs", action="store_true", help="write 8-bit foreground probability maps")
    parser.add_argument("--overlays", action="store_true", help="also write overlay images per sequence")
    parser.add_argument("--video", default=None, help="segment a video file or a folder of frames")
    parser.add_argument("--max_side", type=int, default=None, help="--video: shrink frames to this longer side")
    parser.add_argument("--accept_partial_video", action="store_true",
                        help="--video: keep the frames a damaged video file decodes instead of stopping")
    parser.add_argument("--compare", nargs="+", metavar="RESULTS_DIR", default=None,
                        help="a comparison page of results folders of one benchmark (two checkpoints, or another "
                             "method's masks scored with --score_only) and exit")
    return parser.parse_args()


def main() -> None:
    args = parse_args()
    checkpoint = None
    try:
        cfg = load_config(args, validate=False)
        run = run_from_flags({name: getattr(args, name) for name in FLAGS}, cfg.TEST_DATASET)
        cfg.validate()  # the user's own settings first, then what the checkpoint records
        if not isinstance(run, (ScoreOnlyRun, CompareRun)) and not (args.print_config and not args.ckpt_path):
            checkpoint = adopt_checkpoint_settings(cfg, args.ckpt_path)
        cfg.validate().freeze()
    except ConfigError as err:
        sys.exit(config_error_lines(err))
    except UserError as err:
        sys.exit(f"error: {user_message(err)}")
    if args.print_config:  # with --ckpt_path, as that checkpoint's record completes them
        print(cfg)
        return
    world = init_distributed(cfg.DEVICE, cfg.DEVICE_ID)
    log = setup_logger("eval", None, world.is_main)
    for line in checkpoint.describe_adopted() if checkpoint else []:
        log.info(line)
    results = []
    try:
        if isinstance(run, CompareRun):
            compare(cfg, run)
        elif isinstance(run, ScoreOnlyRun):
            results = score_only(cfg, run)
        elif isinstance(run, VideoRun):
            evaluate_video(cfg, run, checkpoint, world)
        else:
            results = evaluate_benchmarks(cfg, run, checkpoint, world)
    except (UserError, OSError) as err:  # what the user can fix: one line; anything else keeps its traceback
        sys.exit(f"error: {user_message(err)}")
    except torch.OutOfMemoryError as err:
        sys.exit(f"error: {out_of_memory_message(err, OUT_OF_MEMORY_ADVICE)}")
    except KeyboardInterrupt:
        print("error: interrupted; the results folder keeps the sequences that were finished: rerun with --resume "
              "to complete it, or --overwrite to redo it", file=sys.stderr)
        sys.exit(EXIT_INTERRUPTED)
    finally:
        cleanup()
    for result in results:  # the per-sequence tables, then the headline figures
        print(result.table)
    if results:
        print(format_summary(results))


if __name__ == "__main__":
    logging.captureWarnings(True)
    main()
