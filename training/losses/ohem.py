"""OHEM cross-entropy, the authors' segmentation loss, per current frame."""
from __future__ import annotations

from typing import Any

import torch

from training.losses.base import FrameLoss
from training.losses.functions import ohem_cross_entropy


class OhemLoss(FrameLoss):
    """Mean cross-entropy over the pixels harder than −ln 0.7 (or the hardest sixteenth), against the binary label."""
    name = "ohem"

    def __call__(self, outputs: list[torch.Tensor], batch: dict[str, Any]) -> list[torch.Tensor]:
        return [ohem_cross_entropy(logits, batch["curr_label"][i][:, 0].long()) for i, logits in enumerate(outputs)]
