"""The pictures of results pages: figures on the tables' 0-100 scale, labelled axes, legible at 100 % zoom.

Every plot is a PNG written atomically beside its page (matplotlib's Agg: files only, any machine).
"""
from __future__ import annotations

import io

import cv2
import numpy as np

from utils.files import atomic_write
from utils.image_io import write_image
from utils.overlay import overlay

FONT = 10            # points: legible at 100 % zoom
DPI = 100
THUMB_HEIGHT = 180   # pixels: a thumbnail's height
GROUND_TRUTH_BGR = (60, 200, 60)   # green: the ground truth's contour beside the prediction's (yellow)
SECOND_BGR = (255, 120, 0)         # blue: a second method's contour on a comparison's frames
MEASURES = {"J": "J (region IoU)", "F": "F (boundary F-measure)", "J-Mean": "J-Mean", "F-Mean": "F-Mean",
            "S": "S-measure", "maxF": "max F-measure"}


def _pyplot():
    import matplotlib
    matplotlib.use("Agg")  # files only: no display, on any machine
    import matplotlib.pyplot as plt
    plt.rcParams.update({"font.size": FONT, "axes.titlesize": FONT + 1, "legend.fontsize": FONT - 1})
    return plt


def _save(fig, path: str) -> str:
    buffer = io.BytesIO()
    fig.tight_layout()
    fig.savefig(buffer, format="png", dpi=DPI)
    _pyplot().close(fig)
    atomic_write(path, buffer.getvalue())
    return path


def bars(path: str, rows: list[dict[str, str]], columns: list[str]) -> str:
    """Horizontal bars of each sequence's figures (0-100), worst first."""
    plt = _pyplot()
    shown = [c for c in ("J-Mean", "F-Mean", "S", "maxF") if c in columns]
    names = [r["Sequence"] for r in rows]
    fig, ax = plt.subplots(figsize=(9, 0.32 * len(names) + 1.6))
    y = np.arange(len(names))
    height = 0.8 / max(len(shown), 1)
    for i, column in enumerate(shown):
        ax.barh(y + i * height, [100 * float(r[column]) for r in rows], height, label=MEASURES.get(column, column))
    ax.set_yticks(y + height * (len(shown) - 1) / 2, names)
    ax.invert_yaxis()
    ax.set_xlim(0, 100)
    ax.set_xlabel("score (0-100)")
    ax.legend(loc="lower right")
    return _save(fig, path)


def frame_scores(path: str, title: str, series: dict[str, tuple[list[str], list[float]]], note: str = "") -> str:
    """Scores over a sequence's scored frames (0-100): label → (frame names, values 0..1); `note` under the axis."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(8, 3))
    for label, (names, values) in series.items():
        numbered = all(n.isdigit() for n in names)
        x = [int(n) for n in names] if numbered else list(range(len(values)))
        ax.plot(x, [100 * v for v in values], marker="." if len(values) < 60 else None, label=label)
    ax.set_ylim(0, 102)
    ax.set_ylabel("score (0-100)")
    ax.set_xlabel("frame" + (f"\n{note}" if note else ""))
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(loc="lower left")
    return _save(fig, path)


def f_curves(path: str, curves: list[np.ndarray], title: str = "F-measure over thresholds") -> str:
    """Each sequence's F-measure curve (grey) and the dataset's mean curve (red), on 0-100."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(8, 4))
    for curve in curves:
        ax.plot(np.linspace(0, 255, len(curve)), 100 * np.asarray(curve), color="0.75", linewidth=0.8)
    mean = np.mean(curves, axis=0)
    ax.plot(np.linspace(0, 255, len(mean)), 100 * mean, color="C3", linewidth=2, label="mean over sequences")
    ax.plot([], [], color="0.75", label="one sequence")
    ax.set_xlabel("threshold on the 8-bit probability map")
    ax.set_ylabel("F-measure (0-100)")
    ax.set_ylim(0, 102)
    ax.set_title(title)
    ax.legend()
    return _save(fig, path)


def line(path: str, values: list[float], ylabel: str, xlabel: str = "frame") -> str:
    """One series over frames (a video's object area, in %)."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(8, 2.8))
    ax.plot(range(len(values)), values)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.grid(alpha=0.3)
    return _save(fig, path)


def contoured(image: np.ndarray, mask: np.ndarray, truth: np.ndarray | None = None,
              second: np.ndarray | None = None) -> np.ndarray:
    """The frame with the prediction tinted and outlined (yellow), the ground truth's contour (green) and a
    second prediction's contour (blue) beside it."""
    out = overlay(image, mask)
    width = max(1, round(max(image.shape[:2]) / 300))
    for other, colour in ((truth, GROUND_TRUTH_BGR), (second, SECOND_BGR)):
        if other is not None:
            contours, _ = cv2.findContours((other > 0).astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE)
            cv2.drawContours(out, contours, -1, colour, thickness=width)
    return out


def strip(path: str, pictures: list[tuple[str, np.ndarray]], per_row: int = 3) -> str:
    """Thumbnails THUMB_HEIGHT pixels high, `per_row` to a row (so a page shows them at that size), captioned above."""
    thumbs = []
    for caption, image in pictures:
        scale = THUMB_HEIGHT / image.shape[0]
        thumb = cv2.resize(image, (max(1, round(image.shape[1] * scale)), THUMB_HEIGHT), interpolation=cv2.INTER_AREA)
        thumb = cv2.copyMakeBorder(thumb, 26, 6, 0, 8, cv2.BORDER_CONSTANT, value=(255, 255, 255))
        cv2.putText(thumb, caption, (2, 18), cv2.FONT_HERSHEY_SIMPLEX, 0.55, (0, 0, 0), 1, cv2.LINE_AA)
        thumbs.append(thumb)
    rows = [np.concatenate(thumbs[i:i + per_row], axis=1) for i in range(0, len(thumbs), per_row)]
    width = max(r.shape[1] for r in rows)
    rows = [cv2.copyMakeBorder(r, 0, 0, 0, width - r.shape[1], cv2.BORDER_CONSTANT, value=(255, 255, 255))
            for r in rows]
    write_image(path, np.concatenate(rows, axis=0))
    return path
