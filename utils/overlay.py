"""Overlay images for a person to look at: the object tinted, its contour drawn."""
from __future__ import annotations

import cv2
import numpy as np

TINT_BGR = (0, 0, 255)      # red
CONTOUR_BGR = (0, 255, 255)  # yellow


def overlay(frame: np.ndarray, mask: np.ndarray, alpha: float = 0.45) -> np.ndarray:
    """A BGR frame with the mask's object tinted and outlined."""
    out = frame.copy()
    obj = mask > 0
    tint = np.array(TINT_BGR, np.float32)
    out[obj] = (out[obj].astype(np.float32) * (1 - alpha) + tint * alpha).astype(np.uint8)
    contours, _ = cv2.findContours(obj.astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE)
    cv2.drawContours(out, contours, -1, CONTOUR_BGR, thickness=max(1, round(max(frame.shape[:2]) / 400)))
    return out
