"""How far another inference precision's results stray from float32's, on every benchmark whose data is present.

    python -m tools.bench_precision --ckpt_path log/toy/ckpt/save_step_300.pth [--precisions int8]
                                    [--opts DIR_DATA data/toy ...]

Runs the evaluation (evaluation/benchmark_run.py, as `eval.py --dataset all` does) once in float32
and once per precision asked (TEST_PRECISION, with TEST_BACKEND auto), each into a folder of its
own, then prints per benchmark: the share of mask pixels equal to float32's, and each headline
figure's difference (×100, as the tables show them). With trained weights: random weights give
logits near the decision boundary, where any rounding flips pixels.
"""
from __future__ import annotations

import argparse
import os
import tempfile

from config import add_config_args, load_config
from evaluation.benchmark_run import evaluate_benchmarks
from evaluation.benchmarks import BenchmarkResult
from evaluation.options import BenchmarkRun
from inference.checkpoint_settings import adopt_checkpoint_settings
from tools.harness import cpu_description
from utils.distributed import init_distributed
from utils.image_io import read_mask
from utils.logger import setup_logger


def evaluate(args: argparse.Namespace, precision: str, out: str) -> list[BenchmarkResult]:
    """Every benchmark present, at `precision`, into `out`."""
    cfg = load_config(args, validate=False)
    cfg.set("TEST_PRECISION", precision)
    cfg.validate()
    checkpoint = adopt_checkpoint_settings(cfg, args.ckpt_path)
    cfg.validate().freeze()
    return evaluate_benchmarks(cfg, BenchmarkRun("all", out=out), checkpoint, init_distributed(cfg.DEVICE))


def mask_agreement(reference: str, other: str) -> tuple[float, int]:
    """The share of mask pixels equal in two results folders (over every mask PNG of the first), and the masks."""
    equal = total = count = 0
    for base, _, names in os.walk(reference):
        if os.sep + "probabilities" in base or os.sep + "report" in base:
            continue
        for name in names:
            mine = os.path.join(other, os.path.relpath(os.path.join(base, name), reference))
            if name.endswith(".png") and os.path.isfile(mine):
                a, b = read_mask(os.path.join(base, name)) > 0, read_mask(mine) > 0
                equal, total, count = equal + int((a == b).sum()), total + a.size, count + 1
    return equal / max(total, 1), count


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--ckpt_path", required=True)
    parser.add_argument("--precisions", nargs="+", default=["int8"])
    add_config_args(parser)
    args = parser.parse_args()
    setup_logger("bench_precision", None)
    print(f"CPU: {cpu_description()}; {args.ckpt_path}")
    with tempfile.TemporaryDirectory() as root:
        reference = evaluate(args, "float32", os.path.join(root, "float32"))
        print("| benchmark | precision | masks = float32 | masks | figure differences (×100) |")
        print("|---|---|---|---|---|")
        for precision in args.precisions:
            results = evaluate(args, precision, os.path.join(root, precision))
            for ref, res in zip(reference, results):
                folders = [os.path.join(root, p, d) for p in ("float32", precision)
                           for d in os.listdir(os.path.join(root, p)) if d.startswith(ref.name)]
                tag = os.listdir(folders[0])[0]
                share, count = mask_agreement(os.path.join(folders[0], tag), os.path.join(folders[1], tag))
                differences = ", ".join(f"{k} {100 * (res.headline[k] - v):+.2f}" if k != "MAE" else
                                        f"MAE {res.headline[k] - v:+.4f}" for k, v in ref.headline.items()
                                        if k != "videos" and not (k.startswith("J-") and k not in
                                                                  ("J-Mean", "J-Mean-frames", "J-Mean-videos")))
                print(f"| {ref.name} | {precision} | {100 * share:.3f} % | {count} | {differences or '-'} |",
                      flush=True)


if __name__ == "__main__":
    main()
