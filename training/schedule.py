"""The authors' learning-rate schedule: linear warm-up, then poly (or cosine) decay, with a floor."""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Schedule:
    """TRAIN_LR, TRAIN_WARM_UP_STEPS, TRAIN_TOTAL_STEPS, TRAIN_COSINE_DECAY, TRAIN_POWER, TRAIN_MIN_LR."""
    base: float
    warm_up: int
    total: int
    cosine: bool
    power: float
    floor: float

    @classmethod
    def from_config(cls, cfg: Any) -> "Schedule":
        """The schedule a Config describes."""
        return cls(cfg.TRAIN_LR, cfg.TRAIN_WARM_UP_STEPS, cfg.TRAIN_TOTAL_STEPS, cfg.TRAIN_COSINE_DECAY,
                   cfg.TRAIN_POWER, cfg.TRAIN_MIN_LR)

    def learning_rate(self, step: int) -> float:
        """Learning rate at `step` (0-based; steps run 0..total inclusive)."""
        if step < self.warm_up:
            lr = self.base * step / self.warm_up
        elif self.cosine:
            lr = self.base * (math.cos(math.pi * (step - self.warm_up) / (self.total - self.warm_up + 1)) + 1) / 2
        else:
            lr = self.base * (1 - (step - self.warm_up) / (self.total - self.warm_up + 1)) ** self.power
        return max(lr, self.floor)
