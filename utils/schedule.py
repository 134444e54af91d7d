"""The authors' learning-rate schedule: linear warm-up, then poly (or cosine) decay, with a floor."""
from __future__ import annotations

import math

from config import Config


def learning_rate(step: int, cfg: Config) -> float:
    """Learning rate at `step` (0-based; steps run 0..TRAIN_TOTAL_STEPS inclusive)."""
    base, warm, total = cfg.TRAIN_LR, cfg.TRAIN_WARM_UP_STEPS, cfg.TRAIN_TOTAL_STEPS
    if step < warm:
        lr = base * step / warm
    elif cfg.TRAIN_COSINE_DECAY:
        lr = base * (math.cos(math.pi * (step - warm) / (total - warm + 1)) + 1) / 2
    else:
        lr = base * (1 - (step - warm) / (total - warm + 1)) ** cfg.TRAIN_POWER
    return max(lr, cfg.TRAIN_MIN_LR)
