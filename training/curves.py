"""curves.png: a training run's logged scalars (scalars.jsonl, what TensorBoard also gets) as one picture."""
from __future__ import annotations

import io
import json
import os
import re

from utils.files import atomic_write

# (title, tag pattern, y-axis label, scale): loss and IoU per current frame of a sample; IoU on the reports' 0-100.
PANELS = (("loss per current frame", r"loss/frame\d+", "loss (OHEM, + KL with distillation)", 1.0),
          ("IoU per current frame", r"iou/frame\d+", "IoU of the batch (0-100)", 100.0),
          ("learning rate", r"lr", "learning rate", 1.0),
          ("throughput", r"samples_per_second", "samples per second", 1.0))


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
    plt.rcParams.update({"font.size": 10, "legend.fontsize": 9})
    fig, axes = plt.subplots(2, 2, figsize=(11, 7))
    for ax, (title, pattern, ylabel, scale) in zip(axes.flat, PANELS):
        tags = sorted((t for t in scalars if re.fullmatch(pattern, t)), key=lambda t: int(re.sub(r"\D", "", t) or 0))
        for tag in tags:
            steps, values = scalars[tag]
            frame = re.search(r"frame(\d+)$", tag)
            label = f"current frame {int(frame.group(1)) + 1}" if frame else tag
            ax.plot(steps, [scale * v for v in values], label=label, linewidth=1)
        ax.set_title(title)
        ax.set_xlabel("training step")
        ax.set_ylabel(ylabel)
        ax.grid(alpha=0.3)
        if len(ax.lines) > 1:
            ax.legend()
    fig.suptitle("a sample: a reference, a previous and these current frames of one video; each point: one logged "
                 "step's batch (every TRAIN_TBLOG_STEP steps)", fontsize=9)
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=90)
    plt.close(fig)
    atomic_write(path, buffer.getvalue())  # a crash mid-write never leaves half a picture
    return path
