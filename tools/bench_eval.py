"""Whole evaluations, timed as processes: eval.py (masks, scores, report) against the authors' loop (masks only).

    python -m tools.bench_eval --davis ../shared/data/davis16_sample [--sequences blackswan] [--repeats 2]
                               [--precisions float32 int8] [--threads 2]

Each way runs as a process of its own, in turn within each repeat (the shared machine's drifting
load weighs on all alike), after one untimed run of each (exports and int8 calibration are cached
then, as they are for a user's second evaluation). The model is ResNet-101 with random weights
(the released architecture's cost; saved once into a temporary checkpoint). The authors' loop, as
we read their test script: every frame read and preprocessed as theirs, encoded by their encoder
(the decoder upsampling before it convolves), predicted with their window schedule re-projecting
every memory frame and their STA (networks/reference.py), the mask written as a palette PNG.
"""
from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

from tools.harness import ROOT, cpu_description, random_resnet101


def authors_loop(davis: str, sequences: list[str], weights: str, out: str) -> None:
    """The authors' evaluation loop over `sequences`, masks into `out` (run in its own process)."""
    import torch
    import torch.nn.functional as F

    from dataloaders.transforms import eval_preprocess
    from networks.lsta import LSTA
    from networks.reference import authors_encode, authors_segment
    from networks.weights import load_lsta_weights
    from utils.image_io import folder_frames, read_image, write_palette_png
    model = LSTA().eval()
    load_lsta_weights(model, weights)
    size = 11
    with torch.inference_mode():
        for name in sequences:
            frames = folder_frames(os.path.join(davis, "JPEGImages", "480p", name))
            images = [read_image(f) for f in frames]
            n, features = len(images), []
            for t, image in enumerate(images):
                features = (features + [authors_encode(model, eval_preprocess(image)[None])])[-size:]
                if n >= size and t == size - 1:          # the first window: its frames together
                    window, queries = features, [(i, i) for i in range(size)]
                elif n >= size and t >= size:            # then each frame with the window ending at it
                    window, queries = features, [(-1, t)]
                elif n < size and t == n - 1:            # a short video: the window padded with its last frame
                    window, queries = features + [features[-1]] * (size - n), [(i, i) for i in range(n)]
                else:
                    continue
                for i, index in queries:
                    others = window[:i] + window[i + 1:] if i >= 0 else window[:-1]
                    logits = authors_segment(model, window[i], others[:-1], others[-1])
                    mask = F.interpolate(logits, size=image.shape[:2], mode="bilinear", align_corners=True).argmax(1)
                    write_palette_png(os.path.join(out, name, os.path.basename(frames[index])[:-4] + ".png"),
                                      mask[0].byte().numpy())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--davis", required=True, help="a DAVIS root (JPEGImages/480p, Annotations/480p)")
    parser.add_argument("--sequences", nargs="+", default=None, help="default: every sequence of the root")
    parser.add_argument("--precisions", nargs="+", default=["float32", "int8"])
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--authors_loop", nargs=2, metavar=("WEIGHTS", "OUT"), help=argparse.SUPPRESS)  # internal
    args = parser.parse_args()
    sequences = args.sequences or sorted(os.listdir(os.path.join(args.davis, "JPEGImages", "480p")))
    if args.authors_loop:
        authors_loop(args.davis, sequences, *args.authors_loop)
        return
    with tempfile.TemporaryDirectory() as root:
        davis = os.path.join(root, "DAVIS")  # the sequences asked for, as a DAVIS-2016 split
        for kind in ("JPEGImages", "Annotations"):
            for name in sequences:
                shutil.copytree(os.path.join(args.davis, kind, "480p", name), os.path.join(davis, kind, "480p", name))
        os.makedirs(os.path.join(davis, "ImageSets", "2016"))
        with open(os.path.join(davis, "ImageSets", "2016", "val.txt"), "w") as f:
            f.write("\n".join(sequences) + "\n")
        weights = random_resnet101(os.path.join(root, "r101.pth"))
        ways = {f"eval.py {p}": [sys.executable, "eval.py", "--ckpt_path", weights, "--overwrite", "--out",
                                 os.path.join(root, p), "--opts", "DIR_DAVIS", davis, "TEST_PRECISION", p,
                                 "DIR_ONNX_CACHE", os.path.join(root, "onnx")] for p in args.precisions}
        ways["authors' loop"] = [sys.executable, "-m", "tools.bench_eval", "--davis", davis, "--sequences",
                                 *sequences, "--authors_loop", weights, os.path.join(root, "authors")]
        env = {**os.environ, "OMP_NUM_THREADS": str(args.threads)}
        frames = sum(len(os.listdir(os.path.join(davis, "JPEGImages", "480p", s))) for s in sequences)
        print(f"CPU: {cpu_description()}; {args.threads} threads; {', '.join(sequences)} ({frames} frames); "
              f"ResNet-101, random weights", flush=True)
        seconds: dict[str, list[float]] = {name: [] for name in ways}
        for repeat in range(args.repeats + 1):  # the first round is untimed: exports and calibration
            for name, command in ways.items():
                start = time.perf_counter()
                done = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True)
                if done.returncode:
                    raise SystemExit(f"{name} failed:\n{done.stderr[-2000:]}")
                if repeat:
                    seconds[name].append(time.perf_counter() - start)
        authors = seconds["authors' loop"]
        for name, times in seconds.items():
            ratios = [t / a for t, a in zip(times, authors)]
            print(f"{name}: median {statistics.median(times):.1f} s ({frames / statistics.median(times):.2f} "
                  f"frames/s); over the authors' loop {statistics.median(times) / statistics.median(authors):.2f} "
                  f"({min(ratios):.2f}-{max(ratios):.2f} per repeat)")


if __name__ == "__main__":
    main()
