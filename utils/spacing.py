"""Evenly spaced picks: which frames a report shows, which frames calibrate int8."""
from __future__ import annotations

import numpy as np


def evenly_spaced(count: int, wanted: int) -> list[int]:
    """Up to `wanted` distinct indices of range(count), evenly spaced from the first to the last, in order."""
    if count <= 0 or wanted <= 0:
        return []
    return sorted({int(i) for i in np.linspace(0, count - 1, min(wanted, count)).round()})
