"""curves.png: a training run's logged scalars (scalars.jsonl, what TensorBoard also gets) as one picture."""
from __future__ import annotations

import io
import json
import os
import re

from utils.files import atomic_write

PANELS = (("loss per frame", r"loss/frame\d+"), ("IoU per frame", r"iou/frame\d+"), ("learning rate", r"lr"),
          ("samples per second", r"samples_per_second"))


def read_scalars(path: str) -> dict[str, tuple[list[int], list[float]]]:
    """tag → (steps, values) from a run's scalars.jsonl; a step logged again (a resumed run) keeps its last value."""
    by_step: dict[int, dict[str, float]] = {}
    with open(path) as f:
        for line in f:
            try:
                row = json.loads(line)
            except ValueError:
                continue  # a line cut short by a crash
            if isinstance(row, dict) and isinstance(row.get("step"), int):
                by_step[row["step"]] = row
    tags = sorted({tag for row in by_step.values() for tag in row if tag != "step"})
    out = {}
    for tag in tags:
        steps = sorted(s for s, row in by_step.items() if isinstance(row.get(tag), (int, float)))
        out[tag] = (steps, [float(by_step[s][tag]) for s in steps])
    return out


def write_curves(scalars_path: str, path: str) -> str | None:
    """Plot loss and IoU per frame, learning rate and throughput over steps into `path`; None without scalars."""
    scalars = read_scalars(scalars_path) if os.path.isfile(scalars_path) else {}
    if not scalars:
        return None
    import matplotlib
    matplotlib.use("Agg")  # files only: no display, on any machine
    import matplotlib.pyplot as plt
    fig, axes = plt.subplots(2, 2, figsize=(10, 6))
    for ax, (title, pattern) in zip(axes.flat, PANELS):
        for tag in (t for t in scalars if re.fullmatch(pattern, t)):
            steps, values = scalars[tag]
            ax.plot(steps, values, label=tag.split("/")[-1], linewidth=1)
        ax.set_title(title, fontsize=10)
        ax.set_xlabel("step", fontsize=8)
        ax.tick_params(labelsize=8)
        if len(ax.lines) > 1:
            ax.legend(fontsize=7)
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=90)
    plt.close(fig)
    atomic_write(path, buffer.getvalue())  # a crash mid-write never leaves half a picture
    return path
