"""DAVIS-2016 J (region IoU) and F (boundary F-measure) with the official per-sequence statistics.

Per-frame measures as davis2017-evaluation's `metrics.py` computes them (`db_eval_iou`,
`db_eval_boundary` with `seg2bmap`), statistics as the DAVIS toolkit's `db_statistics`, frames
1..n-2 of each sequence (docs/evaluation.md).
"""
from __future__ import annotations

import csv
import os
from collections import Counter
from dataclasses import dataclass

import cv2
import numpy as np

from utils.errors import DataError, MissingFileError
from utils.image_io import mask_encoding, read_binary_mask, read_mask

BOUNDARY_TOLERANCE = 0.008   # of the image diagonal
DECAY_BINS = 4
GLOBAL_COLUMNS = ["J&F-Mean", "J-Mean", "J-Recall", "J-Decay", "F-Mean", "F-Recall", "F-Decay"]
SEQUENCE_COLUMNS = ["Sequence", "J-Mean", "J-Recall", "J-Decay", "F-Mean", "F-Recall", "F-Decay"]


def region_iou(gt: np.ndarray, pred: np.ndarray) -> float:
    """J: |A∩B| / |A∪B| of two binary masks; 1 when both are empty."""
    gt, pred = gt.astype(bool), pred.astype(bool)
    union = np.count_nonzero(gt | pred)
    return 1.0 if union == 0 else np.count_nonzero(gt & pred) / union


def boundary_map(mask: np.ndarray) -> np.ndarray:
    """The official seg2bmap: a pixel is boundary when its 2×2 block (edge-replicated) is not uniform."""
    m = np.pad(mask.astype(bool), ((0, 1), (0, 1)), mode="edge")
    here = m[:-1, :-1]
    return (here != m[:-1, 1:]) | (here != m[1:, :-1]) | (here != m[1:, 1:])


def disk(radius: float) -> np.ndarray:
    """skimage.morphology.disk: the pixels with x² + y² ≤ r² (uint8)."""
    r = np.arange(-radius, radius + 1)
    x, y = np.meshgrid(r, r)
    return (x ** 2 + y ** 2 <= radius ** 2).astype(np.uint8)


def boundary_f(gt: np.ndarray, pred: np.ndarray) -> float:
    """F: boundary F-measure with tolerance ceil(0.008 · diagonal) pixels."""
    radius = np.ceil(BOUNDARY_TOLERANCE * np.linalg.norm(gt.shape))
    gt_b, pred_b = boundary_map(gt), boundary_map(pred)
    kernel = disk(radius)
    gt_dil = cv2.dilate(gt_b.astype(np.uint8), kernel).astype(bool)
    pred_dil = cv2.dilate(pred_b.astype(np.uint8), kernel).astype(bool)
    n_pred, n_gt = np.count_nonzero(pred_b), np.count_nonzero(gt_b)
    if n_pred == 0 and n_gt > 0:
        precision, recall = 1.0, 0.0
    elif n_pred > 0 and n_gt == 0:
        precision, recall = 0.0, 1.0
    elif n_pred == 0 and n_gt == 0:
        precision, recall = 1.0, 1.0
    else:
        precision = np.count_nonzero(pred_b & gt_dil) / n_pred
        recall = np.count_nonzero(gt_b & pred_dil) / n_gt
    return 0.0 if precision + recall == 0 else 2 * precision * recall / (precision + recall)


def statistics(values: np.ndarray) -> tuple[float, float, float]:
    """(Mean, Recall = share > 0.5, Decay = mean of the first of 4 temporal bins − mean of the last)."""
    values = np.asarray(values, dtype=np.float64)
    if values.size == 0:
        raise DataError("no frames to score (a sequence needs at least 3 frames)")
    ids = (np.round(np.linspace(1, len(values), DECAY_BINS + 1) + 1e-10) - 1).astype(np.int64)
    bins = [values[ids[i]:ids[i + 1] + 1] for i in range(DECAY_BINS)]
    return float(values.mean()), float((values > 0.5).mean()), float(bins[0].mean() - bins[-1].mean())


@dataclass
class SequenceScore:
    """Per-frame J and F of one sequence's scored frames, and their statistics."""
    name: str
    j: np.ndarray
    f: np.ndarray

    def row(self) -> dict[str, float | str]:
        """The per-sequence CSV row."""
        jm, jr, jd = statistics(self.j)
        fm, fr, fd = statistics(self.f)
        return {"Sequence": self.name, "J-Mean": jm, "J-Recall": jr, "J-Decay": jd,
                "F-Mean": fm, "F-Recall": fr, "F-Decay": fd}


def read_pair(gt_path: str, result_path: str, seen: Counter | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(ground truth, result) as binary masks (any nonzero pixel is foreground); a missing result or a
    size mismatch is an error naming it. `seen` counts the ground truth's encodings (mask_encoding)."""
    if not os.path.isfile(result_path):
        raise MissingFileError(f"result mask missing: {result_path} (ground truth {gt_path})")
    gt_values, pred = read_mask(gt_path), read_binary_mask(result_path)
    if seen is not None:
        seen[mask_encoding(gt_values)] += 1
    gt = gt_values > 0
    if gt.shape != pred.shape:
        raise DataError(f"result mask {result_path} is {pred.shape[1]}x{pred.shape[0]} but the ground "
                         f"truth {gt_path} is {gt.shape[1]}x{gt.shape[0]}")
    return gt, pred


def score_pairs(name: str, pairs: list[tuple[str, str]], boundary: bool = True,
                seen: Counter | None = None) -> SequenceScore:
    """J (and F) of each (ground truth, result) pair of one sequence."""
    j, f = [], []
    for gt_path, result_path in pairs:
        gt, pred = read_pair(gt_path, result_path, seen)
        j.append(region_iou(gt, pred))
        if boundary:
            f.append(boundary_f(gt, pred))
    return SequenceScore(name, np.array(j), np.array(f))


def davis_figures(scores: list[SequenceScore]) -> tuple[dict[str, float], list[dict]]:
    """(global figures, per-sequence rows) of the DAVIS statistics; dataset figures are means over sequences."""
    rows = [s.row() for s in scores]
    figures = {c: float(np.mean([r[c] for r in rows])) for c in SEQUENCE_COLUMNS[1:]}
    return {"J&F-Mean": (figures["J-Mean"] + figures["F-Mean"]) / 2, **figures}, rows


def write_csv(path: str, columns: list[str], rows: list[dict]) -> None:
    """Rows as CSV, numbers at full precision."""
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, columns)
        writer.writeheader()
        for row in rows:
            writer.writerow({c: repr(row[c]) if isinstance(row[c], float) else row[c] for c in columns})


def davis_csv_names(split: str | None) -> list[str]:
    """`global_results-<split>.csv`, `per-sequence_results-<split>.csv` (davis2017-evaluation's names)."""
    suffix = f"-{split}" if split else ""
    return [f"global_results{suffix}.csv", f"per-sequence_results{suffix}.csv"]


def write_davis_csvs(results_dir: str, split: str | None, figures: dict[str, float], rows: list[dict]) -> list[str]:
    """The global and per-sequence CSVs of the DAVIS statistics; returns their names."""
    names = davis_csv_names(split)
    write_csv(os.path.join(results_dir, names[0]), GLOBAL_COLUMNS, [figures])
    write_csv(os.path.join(results_dir, names[1]), SEQUENCE_COLUMNS, rows)
    return names


def format_table(figures: dict[str, float], rows: list[dict]) -> str:
    """The global and per-sequence figures as a console table (×100, like papers report)."""
    lines = ["  ".join(f"{c:>9s}" for c in GLOBAL_COLUMNS),
             "  ".join(f"{100 * figures[c]:9.1f}" for c in GLOBAL_COLUMNS), ""]
    width = max([len("Sequence")] + [len(r["Sequence"]) for r in rows])
    lines.append(f"{'Sequence':<{width}s}  " + "  ".join(f"{c:>8s}" for c in SEQUENCE_COLUMNS[1:]))
    for r in rows:
        lines.append(f"{r['Sequence']:<{width}s}  " + "  ".join(f"{100 * r[c]:8.1f}" for c in SEQUENCE_COLUMNS[1:]))
    return "\n".join(lines)
