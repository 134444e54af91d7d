"""The interface of a training loss: a step's outputs and batch → one per-sample loss (samples,) per current frame."""
from __future__ import annotations

from typing import Any, ClassVar

import torch


class FrameLoss:
    """A named loss term. Per current frame it gives a per-sample loss, so that a step means the same
    whatever the split of its batch over passes and processes (the authors trained one sample per GPU)."""
    name: ClassVar[str]

    @classmethod
    def from_config(cls, cfg: Any, device: torch.device) -> "FrameLoss":
        """The loss a Config describes (its own keys only)."""
        return cls()

    def __call__(self, outputs: list[torch.Tensor], batch: dict[str, Any]) -> list[torch.Tensor]:
        """Per current frame: the per-sample loss (samples,) of `outputs` (logits (B,2,H,W) per frame)."""
        raise NotImplementedError
