"""Video salient-object measures with the DAVSOD toolbox's aggregation, on pysodmetrics' per-frame code.

Per frame (pysodmetrics): S-measure (α 0.5), F-measure at 256 thresholds and at the adaptive
threshold (β² 0.3), MAE; the prediction min-max normalised, the ground truth thresholded at 128.
Per sequence: means over its frames (F: the mean curve). Dataset: means over sequences; max F is
the maximum of the mean of the sequences' curves.
"""
from __future__ import annotations

import warnings
from collections import Counter

import numpy as np
from PIL import Image

from utils.errors import DataError
from utils.image_io import mask_encoding, read_mask

F_BETA_SQUARED = 0.3
S_ALPHA = 0.5


def read_saliency_gt(path: str, seen: Counter | None = None) -> np.ndarray:
    """Ground truth as the DAVSOD toolbox reads it, 0..255 grey (pysodmetrics then takes > 128).

    A palette PNG's nonzero indices and a 0/1 grey mask become 255 (a 0/1 mask would otherwise be
    all background); other grey values are kept, so a soft map is thresholded at 128. `seen`
    counts the encodings met (mask_encoding), for one warning per benchmark.
    """
    mask = read_mask(path)
    with Image.open(path) as img:
        palette = img.mode == "P"
    kind = "binary" if palette and mask.any() else mask_encoding(mask)
    if seen is not None:
        seen[kind] += 1
    if palette or kind == "0/1":
        return (mask > 0).astype(np.uint8) * 255
    return mask


def read_probability(path: str) -> np.ndarray:
    """An 8-bit probability map (0..255)."""
    with Image.open(path) as img:
        return np.array(img.convert("L"), dtype=np.uint8)


def sequence_saliency(pairs: list[tuple[np.ndarray, np.ndarray]]) -> dict[str, object]:
    """Means over one sequence's (probability uint8, ground truth uint8) frames: S, adaptive F, MAE, F curve."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # pysodmetrics announces a newer F-measure API; this one is the toolbox's
        # Imported here: it pulls in scikit-learn (~1.4 s), which only saliency scoring needs.
        from py_sod_metrics import MAE, Fmeasure, Smeasure
        s, f, mae = Smeasure(alpha=S_ALPHA), Fmeasure(beta=F_BETA_SQUARED), MAE()
        for pred, gt in pairs:
            if pred.shape != gt.shape:
                raise DataError(f"probability map {pred.shape} and ground truth {gt.shape} differ in size")
            s.step(pred, gt)
            f.step(pred, gt)
            mae.step(pred, gt)
        fm = f.get_results()["fm"]
        return {"S": float(s.get_results()["sm"]), "adpF": float(fm["adp"]), "MAE": float(mae.get_results()["mae"]),
                "F_curve": np.asarray(fm["curve"], dtype=np.float64)}


def dataset_saliency(sequences: list[dict[str, object]]) -> dict[str, float]:
    """Means over sequences; max F = max of the mean F curve."""
    curve = np.mean([s["F_curve"] for s in sequences], axis=0)
    return {"S": float(np.mean([s["S"] for s in sequences])), "maxF": float(curve.max()),
            "adpF": float(np.mean([s["adpF"] for s in sequences])), "MAE": float(np.mean([s["MAE"] for s in sequences]))}
