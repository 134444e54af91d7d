"""Export a checkpoint's encoder and head for TEST_BACKEND onnxruntime ahead of time; check them against PyTorch.

    python -m tools.export_onnx --ckpt_path best_LSTA.pth [--opts DIR_ONNX_CACHE DIR]

The export lands where evaluation looks for it (DIR_ONNX_CACHE, under a digest of the weights), so
the first evaluation does not pay for it. The check runs one random 481x849 frame (or the size given)
through both encoders and both heads and prints the largest differences, relative to the largest
magnitude of PyTorch's output.
"""
from __future__ import annotations

import argparse
import sys
import time

import torch

from config import add_config_args, load_config
from inference.backends.onnxruntime_backend import OnnxRuntimeBackend
from inference.options import InferenceOptions
from networks.weights import load_lsta
from utils.errors import UserError, user_message


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--ckpt_path", required=True, help="LSTA weights (best_LSTA.pth or a save_step_*.pth)")
    parser.add_argument("--size", type=int, nargs=2, default=[481, 849], metavar=("H", "W"),
                        help="frame size of the check")
    add_config_args(parser)
    args = parser.parse_args()
    cfg = load_config(args)
    model, _ = load_lsta(args.ckpt_path, cfg)
    model.eval()
    start = time.perf_counter()
    onnx = OnnxRuntimeBackend(model, InferenceOptions(onnx_cache=cfg.DIR_ONNX_CACHE), torch.device("cpu"))
    print(f"{args.ckpt_path}: encoder and head in {onnx.folder} (ready in {time.perf_counter() - start:.1f} s)")
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
