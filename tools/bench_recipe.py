"""The authors' training step against the clean one, on the toy data: loss curve and clip coefficient.

    python -m tools.bench_recipe [--steps 200] [--data data/toy] [--json out.json]

Both recipes start from the same weights and see the same batches (same seed): the toy
architecture (ResNet-18, narrow head) with its encoder frozen at random weights, as the recipe
presets freeze the pretrained one, and no teacher. Printed: every `--every` steps, the mean loss
over current frames and the last frame's loss, averaged since the last line, and the clip
coefficient (the factor clipping scaled the head's gradients by; 1 = not clipped).
"""
from __future__ import annotations

import argparse
import json
import statistics
import tempfile

import torch

from config import Config
from dataloaders.loader import LoaderSettings, build_train_loader
from dataloaders.toy_data import ensure_toy_data
from dataloaders.train_datasets import build_train_dataset
from training.build import build_trainer
from utils.distributed import DistInfo
from utils.logger import setup_logger

RECIPES = {"authors": {"TRAIN_LOSS_LAST_FRAME_ONLY": True, "TRAIN_AUTHORS_ENCODER_GRAD": True},
           "clean": {"TRAIN_LOSS_LAST_FRAME_ONLY": False, "TRAIN_AUTHORS_ENCODER_GRAD": False}}


def run_recipe(name: str, data: str, steps: int) -> list[dict]:
    """Train `steps` steps of one recipe; per step: mean loss, last frame's loss, clip coefficient."""
    cfg = Config()
    cfg.apply_preset("toy")
    for key, value in {"DIR_DATA": data, "DIR_ROOT": tempfile.mkdtemp(), "DATA_WORKERS": 0,
                       "MODEL_TRAIN_ENCODER": False, "MODEL_FREEZE_BN": True, "TRAIN_TOTAL_STEPS": steps,
                       "TRAIN_WARM_UP_STEPS": min(cfg.TRAIN_WARM_UP_STEPS, steps),
                       **RECIPES[name]}.items():
        cfg.set(key, value)
    cfg.validate()
    parts = build_trainer(cfg, DistInfo(0, 1, 0, torch.device("cpu")), setup_logger("bench_recipe", None))
    loader, sampler = build_train_loader(build_train_dataset(cfg), LoaderSettings.from_config(cfg), parts.rank_batch)
    torch.manual_seed(cfg.TRAIN_SEED)
    parts.model.train()
    rows, step, epoch = [], 0, 0
    while step < steps:
        sampler.set_position(epoch, 0)
        for batch in loader:
            result = parts.step(batch, step)
            rows.append({"step": step, "loss": sum(result.losses) / len(result.losses), "last": result.losses[-1],
                         "clip": result.clip_coefficient(cfg.TRAIN_CLIP_GRAD_NORM)})
            step += 1
            if step == steps:
                break
        epoch += 1
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--every", type=int, default=20)
    parser.add_argument("--data", default="data/toy", help="toy data (made here when missing)")
    parser.add_argument("--json", default=None, help="also write every step's figures here")
    args = parser.parse_args()
    ensure_toy_data(args.data)
    torch.set_num_threads(max(1, torch.get_num_threads()))
    runs = {name: run_recipe(name, args.data, args.steps) for name in RECIPES}
    print(f"{'steps':>9s} | {'authors loss':>12s} {'last':>7s} {'clip':>6s} | {'clean loss':>10s} {'last':>7s} {'clip':>6s}")
    for start in range(0, args.steps, args.every):
        cells = []
        for name in RECIPES:
            chunk = runs[name][start:start + args.every]
            cells.append(f"{statistics.mean(r['loss'] for r in chunk):>{12 if name == 'authors' else 10}.4f} "
                         f"{statistics.mean(r['last'] for r in chunk):7.4f} {statistics.mean(r['clip'] for r in chunk):6.3f}")
        print(f"{start:>4d}-{min(start + args.every, args.steps) - 1:<4d} | " + " | ".join(cells))
    for name, rows in runs.items():
        clips = [r["clip"] for r in rows]
        print(f"{name}: clip coefficient min {min(clips):.3f} median {statistics.median(clips):.3f} max {max(clips):.3f}; "
              f"mean loss over the last {args.every} steps {statistics.mean(r['loss'] for r in rows[-args.every:]):.4f}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(runs, f)


if __name__ == "__main__":
    main()
