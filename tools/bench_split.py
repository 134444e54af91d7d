"""How much one training step depends on how its batch is split into passes, on the toy model.

    python -m tools.bench_split [--data data/toy] [--batch 4]

One step on one fixed batch, taken in one pass and in passes of one sample (gradient
accumulation; several processes split the same way). Three model modes:
  eval            no dropout, BN running statistics: the split changes nothing but float rounding
  train, no drop  BN of the refine head uses each pass's statistics (dropout turned off)
  train           the training mode: BN per pass, and ASPP dropout draws that follow the split
Printed: the relative difference of the loss and of the head's update between the two splits.
"""
from __future__ import annotations

import argparse

import torch

from config import Config
from dataloaders.loader import LoaderSettings, build_train_loader
from dataloaders.toy_data import ensure_toy_data
from dataloaders.train_datasets import build_train_dataset
from tools.harness import toy_config
from training.build import build_trainer
from utils.distributed import DistInfo
from utils.logger import setup_logger


def one_step(cfg: Config, batch: dict, per_pass: int, mode: str) -> tuple[float, torch.Tensor]:
    """(mean loss, the head's update vector) of one step in `mode`, in passes of `per_pass` samples."""
    cfg.set("TRAIN_MAX_BATCH_PER_PASS", per_pass)
    parts = build_trainer(cfg, DistInfo(0, 1, 0, torch.device("cpu")), setup_logger("bench_split", None))
    parts.model.train(mode != "eval")
    if mode == "train, no drop":
        for module in parts.model.modules():
            if isinstance(module, torch.nn.Dropout):
                module.eval()
    head = [p for n, p in parts.lsta.named_parameters() if p.requires_grad and not n.startswith("feature_extractor.")]
    before = torch.cat([p.detach().flatten().clone() for p in head])
    torch.manual_seed(5)
    result = parts.step(batch, 10)
    return sum(result.losses) / len(result.losses), torch.cat([p.detach().flatten() for p in head]) - before


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default="data/toy", help="toy data (made here when missing)")
    parser.add_argument("--batch", type=int, default=4)
    args = parser.parse_args()
    ensure_toy_data(args.data)
    cfg = toy_config(args.data, TRAIN_BATCH_SIZE=args.batch, TRAIN_WARM_UP_STEPS=0, MODEL_TRAIN_ENCODER=False,
                     MODEL_FREEZE_BN=True)
    loader, _ = build_train_loader(build_train_dataset(cfg), LoaderSettings.from_config(cfg), args.batch)
    batch = next(iter(loader))
    print(f"toy model, batch {args.batch}: one pass vs passes of 1 sample")
    print(f"{'mode':<16s} {'loss rel. diff':>14s} {'update rel. diff':>16s}")
    for mode in ("eval", "train, no drop", "train"):
        loss_one, update_one = one_step(cfg, batch, 0, mode)
        loss_split, update_split = one_step(cfg, batch, 1, mode)
        print(f"{mode:<16s} {abs(loss_split - loss_one) / abs(loss_one):14.2e} "
              f"{((update_split - update_one).norm() / update_one.norm()).item():16.2e}")


if __name__ == "__main__":
    main()
