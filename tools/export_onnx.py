"""Export a checkpoint's encoder for TEST_BACKEND onnxruntime ahead of time, and check it against PyTorch.

    python -m tools.export_onnx --ckpt_path best_LSTA.pth [--opts DIR_ONNX_CACHE DIR]

The export lands where evaluation looks for it (DIR_ONNX_CACHE, under a digest of the weights), so
the first evaluation does not pay for it. The check runs one random 481x849 frame (or the size given)
through both and prints the largest difference, relative to the features' largest magnitude.
"""
from __future__ import annotations

import argparse
import sys
import time

import torch

from config import add_config_args, load_config
from inference.onnx_encoder import OnnxEncoder
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
    encoder = OnnxEncoder.for_model(model.feature_extractor, model.args.to_record(), cfg.DIR_ONNX_CACHE)
    print(f"encoder of {args.ckpt_path}: {encoder.path} (ready in {time.perf_counter() - start:.1f} s)")
    torch.manual_seed(0)
    images = torch.randn(1, 3, *args.size)
    with torch.inference_mode():
        reference = model.encode(images)
    difference = (encoder(images) - reference).abs().max() / reference.abs().max()
    print(f"check at {args.size[0]}x{args.size[1]}: max |onnxruntime - torch| / max |torch| = {difference:.2e}")


if __name__ == "__main__":
    try:
        main()
    except UserError as err:
        sys.exit(f"error: {user_message(err)}")
