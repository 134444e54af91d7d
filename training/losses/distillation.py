"""Distillation from the STM teacher: KL divergence to its logits, per current frame (MODEL_DISTILLATION)."""
from __future__ import annotations

from typing import Any

import torch

from training.distillation import StmTeacher
from training.losses.base import FrameLoss
from training.losses.functions import distillation_kl


class DistillationLoss(FrameLoss):
    """The teacher memorises the previous frame with its mask and segments the current one; the student's
    logits are pulled towards it. The memory slides one frame at a time, as the authors' loop does."""
    name = "distillation"

    def __init__(self, teacher: StmTeacher) -> None:
        self.teacher = teacher

    @classmethod
    def from_config(cls, cfg: Any, device: torch.device) -> "DistillationLoss":
        return cls(StmTeacher(cfg.MODEL_DISTILLATION_PRETRAINED_TEACHER, cfg.TRAIN_DISTILLATION_TEACHER_AS_DESIGNED,
                              device))

    def __call__(self, outputs: list[torch.Tensor], batch: dict[str, Any]) -> list[torch.Tensor]:
        as_designed = self.teacher.as_designed
        previous, mask = batch["prev_img"], batch["prev_label" if as_designed else "prev_ids"]
        losses = []
        for i, logits in enumerate(outputs):
            losses.append(distillation_kl(logits, self.teacher.logits(previous, mask, batch["curr_img"][i])))
            previous, mask = batch["curr_img"][i], batch["curr_label" if as_designed else "curr_ids"][i]
        return losses
