"""Time LSTA's encoder and head per frame (481×849 by default) and report peak memory.

    python tools/bench_model.py [--device cpu|cuda] [--backbone resnet101] [--repeats 3]

Head time is per query frame at each memory size (window = query + size-1 memory frames), for our
cached head (each frame projected once) and for the authors' form (every memory frame re-projected
for every query).
"""
from __future__ import annotations

import argparse
import os
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from config import Config  # noqa: E402
from networks.lsta import LSTA  # noqa: E402
from utils.timing import now, peak_memory_mb  # noqa: E402


def timed(fn, device: str, repeats: int) -> float:
    """Median seconds of `fn()` after one warm-up call, CUDA-synchronised."""
    fn()
    times = []
    for _ in range(repeats):
        start = now(device)
        fn()
        times.append(now(device) - start)
    return sorted(times)[len(times) // 2]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--backbone", default="resnet101")
    parser.add_argument("--height", type=int, default=481)
    parser.add_argument("--width", type=int, default=849)
    parser.add_argument("--memory_sizes", type=int, nargs="+", default=[11, 41])
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()

    cfg = Config()
    cfg.set("MODEL_BACKBONE", args.backbone)
    torch.manual_seed(0)
    model = LSTA(cfg).to(args.device).eval()
    image = torch.randn(1, 3, args.height, args.width, device=args.device)
    print(f"device {args.device} ({torch.get_num_threads()} threads), backbone {args.backbone}, "
          f"input {args.height}x{args.width}, float32, torch {torch.__version__}")
    with torch.inference_mode():
        features = model.encode(image)
        encoder_s = timed(lambda: model.encode(image), args.device, args.repeats)
        print(f"encoder: {encoder_s * 1000:.1f} ms/frame -> features {tuple(features.shape)}")
        for size in args.memory_sizes:
            memory = [features.clone() for _ in range(size - 1)]
            caches = [model.cache_frames(f) for f in memory]

            def cached_step():
                query = model.cache_frames(features)  # the new frame is projected once
                return model.segment_cached(query, caches[:-1], caches[-1])

            def authors_step():
                return model.segment(features, memory[:-1], memory[-1])

            logits = cached_step()
            cached_s = timed(cached_step, args.device, args.repeats)
            authors_s = timed(authors_step, args.device, args.repeats)
            print(f"head, memory size {size}: {cached_s * 1000:.1f} ms/frame cached, "
                  f"{authors_s * 1000:.1f} ms/frame re-projecting (x{authors_s / cached_s:.2f}) "
                  f"-> logits {tuple(logits.shape)}")
    print(f"peak memory: {peak_memory_mb(args.device):.0f} MiB ({'GPU allocated' if args.device == 'cuda' else 'CPU RSS'})")


if __name__ == "__main__":
    main()
