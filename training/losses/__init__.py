"""The training losses: a new loss is one file here and one line of LOSSES.

The authors' losses are OHEM cross-entropy and, with MODEL_DISTILLATION, the KL term to the STM
teacher, weighted (1 − w) and w (w = TRAIN_DISTILLATION_LOSS_WEIGHT). Any other registered loss
joins with its weight through `--opts TRAIN_EXTRA_LOSSES "{'name': weight}"`. `LossComputer`
turns a step's outputs into a dict of named, weighted per-frame losses; the Trainer sums them.
"""
from __future__ import annotations

from typing import Any

import torch

from training.losses.base import FrameLoss
from training.losses.distillation import DistillationLoss
from training.losses.functions import batch_iou, distillation_kl, ohem_cross_entropy
from training.losses.ohem import OhemLoss

LOSSES: dict[str, type[FrameLoss]] = {
    "ohem": OhemLoss,
    "distillation": DistillationLoss,
}

__all__ = ["LOSSES", "FrameLoss", "LossComputer", "batch_iou", "build_losses", "distillation_kl",
           "ohem_cross_entropy", "loss_names"]


def loss_names() -> tuple[str, ...]:
    """The names TRAIN_EXTRA_LOSSES may use."""
    return tuple(LOSSES)


class LossComputer:
    """Named loss terms with their weights (None: unweighted); called on a step's outputs and batch."""

    def __init__(self, terms: list[tuple[FrameLoss, float | None]]) -> None:
        self.terms = terms

    @property
    def names(self) -> list[str]:
        """The terms' names, in the order they are summed."""
        return [loss.name for loss, _ in self.terms]

    def __call__(self, outputs: list[torch.Tensor], batch: dict[str, Any]) -> dict[str, list[torch.Tensor]]:
        """name → per current frame, the weighted per-sample loss (samples,)."""
        named = {}
        for loss, weight in self.terms:
            values = loss(outputs, batch)
            named[loss.name] = values if weight is None else [weight * v for v in values]
        return named

    @staticmethod
    def total(named: dict[str, list[torch.Tensor]]) -> list[torch.Tensor]:
        """Per current frame, the sum of the terms (in their order)."""
        terms = list(named.values())
        totals = list(terms[0])
        for values in terms[1:]:
            totals = [a + b for a, b in zip(totals, values)]
        return totals


def build_losses(cfg: Any, device: torch.device) -> LossComputer:
    """The losses a Config asks for: OHEM, the distillation term (MODEL_DISTILLATION), TRAIN_EXTRA_LOSSES."""
    w = cfg.TRAIN_DISTILLATION_LOSS_WEIGHT
    terms: list[tuple[FrameLoss, float | None]] = [(OhemLoss.from_config(cfg, device),
                                                    1 - w if cfg.MODEL_DISTILLATION else None)]
    if cfg.MODEL_DISTILLATION:
        terms.append((DistillationLoss.from_config(cfg, device), w))
    for name, weight in cfg.TRAIN_EXTRA_LOSSES.items():
        terms.append((LOSSES[name].from_config(cfg, device), float(weight)))
    return LossComputer(terms)
