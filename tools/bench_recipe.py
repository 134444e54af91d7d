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

import torch

from config import PRESETS
from dataloaders.loader import LoaderSettings, build_train_loader, epoch_batches
from dataloaders.toy_data import ensure_toy_data
from dataloaders.train_datasets import build_train_dataset
from tools.harness import toy_config
from training.build import build_trainer
from training.trainer import HookBase
from utils.distributed import DistInfo
from utils.logger import setup_logger

RECIPES = {"authors": {"TRAIN_LOSS_LAST_FRAME_ONLY": True, "TRAIN_AUTHORS_ENCODER_GRAD": True},
           "clean": {"TRAIN_LOSS_LAST_FRAME_ONLY": False, "TRAIN_AUTHORS_ENCODER_GRAD": False}}


class _Record(HookBase):
    """Keeps each step's mean loss, last frame's loss and clip coefficient; stops after `steps` steps."""

    def __init__(self, steps: int) -> None:
        self.steps, self.rows = steps, []

    def after_step(self, trainer, state) -> None:
        result = state.result
        self.rows.append({"step": state.step, "loss": sum(result.losses) / len(result.losses),
                          "last": result.losses[-1], "clip": result.clip_coefficient(trainer.settings.clip_norm)})
        if len(self.rows) == self.steps:
            state.stop_reason = "done"


def run_recipe(name: str, data: str, steps: int) -> list[dict]:
    """Train `steps` steps of one recipe (Trainer.run); per step: mean loss, last frame's loss, clip coefficient."""
    cfg = toy_config(data, MODEL_TRAIN_ENCODER=False, MODEL_FREEZE_BN=True, TRAIN_TOTAL_STEPS=steps,
                     TRAIN_WARM_UP_STEPS=min(PRESETS["toy"]["TRAIN_WARM_UP_STEPS"], steps), **RECIPES[name])
    trainer = build_trainer(cfg, DistInfo(0, 1, 0, torch.device("cpu")), setup_logger("bench_recipe", None))
    loader, sampler = build_train_loader(build_train_dataset(cfg), LoaderSettings.from_config(cfg), trainer.rank_batch)
    torch.manual_seed(cfg.TRAIN_SEED)
    record = _Record(steps)
    trainer.run(epoch_batches(loader, sampler, 0, trainer.rank_batch), 0, [record])
    return record.rows


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
    print(f"{'steps':>9s} | {'authors loss':>12s} {'last':>7s} {'clip':>6s} | "
          f"{'clean loss':>10s} {'last':>7s} {'clip':>6s}")
    for start in range(0, args.steps, args.every):
        cells = []
        for name in RECIPES:
            chunk = runs[name][start:start + args.every]
            cells.append(f"{statistics.mean(r['loss'] for r in chunk):>{12 if name == 'authors' else 10}.4f} "
                         f"{statistics.mean(r['last'] for r in chunk):7.4f} "
                         f"{statistics.mean(r['clip'] for r in chunk):6.3f}")
        print(f"{start:>4d}-{min(start + args.every, args.steps) - 1:<4d} | " + " | ".join(cells))
    for name, rows in runs.items():
        clips = [r["clip"] for r in rows]
        last = statistics.mean(r["loss"] for r in rows[-args.every:])
        print(f"{name}: clip coefficient min {min(clips):.3f} median {statistics.median(clips):.3f} "
              f"max {max(clips):.3f}; mean loss over the last {args.every} steps {last:.4f}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(runs, f)


if __name__ == "__main__":
    main()
