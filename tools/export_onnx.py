"""Export a checkpoint's encoder and head for TEST_BACKEND onnxruntime ahead of time; check them against PyTorch.

    python -m tools.export_onnx --ckpt_path best_LSTA.pth [--opts DIR_ONNX_CACHE DIR]
    python -m tools.export_onnx --ckpt_path best_LSTA.pth --dataset davis2016 --opts TEST_PRECISION int8
    python -m tools.export_onnx --ckpt_path best_LSTA.pth --opts TEST_PRECISION int8 TEST_INT8_CALIBRATION FRAMES

`--dataset` (and `--root`) serve int8 calibration only, and are refused elsewhere.

The export lands where evaluation looks for it (DIR_ONNX_CACHE, under a digest of the weights), so
the first evaluation does not pay for it. With TEST_PRECISION int8 the quantized encoder is built
too, calibrated as evaluation will calibrate it (and so found in the cache by it): on the frames
eval.py takes from `--dataset`'s benchmark, or on TEST_INT8_CALIBRATION's folder. The check runs
one random 481x849 frame (or the size given) through both encoders and both heads and prints the
largest differences, relative to the largest magnitude of PyTorch's output.
"""
from __future__ import annotations

import argparse
import dataclasses
import sys
import time

import torch

from config import Config, add_config_args, load_config
from evaluation.benchmark_run import calibration_frames, read_benchmarks
from inference.options import InferenceOptions
from inference.segmenter import VideoSegmenter
from networks.weights import load_lsta
from utils.errors import SettingError, UserError, user_message


def built_segmenter(model: torch.nn.Module, cfg: Config, dataset: str | None, root: str | None) -> VideoSegmenter:
    """The onnxruntime segmenter evaluation would build, its export (and int8's, calibrated) made or found."""
    if root and not dataset:
        raise SettingError("--root names --dataset's data: give --dataset too")
    if dataset and (cfg.TEST_PRECISION != "int8" or cfg.TEST_INT8_CALIBRATION):
        raise SettingError("--dataset chooses int8's calibration frames: it needs --opts TEST_PRECISION int8, "
                           "without TEST_INT8_CALIBRATION (which names them already)")
    options = dataclasses.replace(InferenceOptions.from_config(cfg), backend="onnxruntime")
    segmenter = VideoSegmenter(model, options, torch.device("cpu"))
    if segmenter.backend.needs_calibration:  # int8 without TEST_INT8_CALIBRATION: the benchmark's frames
        if not dataset:
            raise SettingError("TEST_PRECISION int8 needs calibration frames: give --dataset NAME (calibrated as "
                               "eval.py calibrates on it) or TEST_INT8_CALIBRATION FOLDER")
        segmenter.calibrate(calibration_frames(read_benchmarks(cfg, dataset, root)[0].sequences))
    return segmenter


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--ckpt_path", required=True, help="LSTA weights (best_LSTA.pth or a save_step_*.pth)")
    parser.add_argument("--size", type=int, nargs=2, default=[481, 849], metavar=("H", "W"),
                        help="frame size of the check")
    parser.add_argument("--dataset", default=None, help="int8: calibrate on this benchmark's frames, as eval.py does")
    parser.add_argument("--root", default=None, help="the benchmark's root folder (default: its DIR_* setting)")
    add_config_args(parser)
    args = parser.parse_args()
    cfg = load_config(args)
    model, _ = load_lsta(args.ckpt_path, cfg)
    model.eval()
    start = time.perf_counter()
    onnx = built_segmenter(model, cfg, args.dataset, args.root).backend
    print(f"{args.ckpt_path}: {cfg.TEST_PRECISION} encoder and head in {onnx.folder} "
          f"(ready in {time.perf_counter() - start:.1f} s)")
    torch.manual_seed(0)
    images = torch.randn(1, 3, *args.size)
    with torch.inference_mode():
        features = model.encode(images)
        cache = model.cache_frames(features)
        reference = model.segment_cached(cache, [cache], cache)
        logits = model.segment_cached(cache, [cache], cache, onnx.head)
        encoded = onnx.encode(images)
    for part, got, want in (("encoder", encoded, features), ("head", logits, reference)):
        print(f"check at {args.size[0]}x{args.size[1]}, {part}: max |onnxruntime - torch| / max |torch| = "
              f"{float((got - want).abs().max() / want.abs().max()):.2e}")

if __name__ == "__main__":
    try:
        main()
    except UserError as err:
        sys.exit(f"error: {user_message(err)}")
