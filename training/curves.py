"""curves.png: a training run's scalars (the ones TensorBoard shows) as one picture, written when training stops."""
from __future__ import annotations

import logging
import os
import re

from utils.files import atomic_write

log = logging.getLogger("lsta.train")
PANELS = (("loss per frame", r"loss/frame\d+"), ("IoU per frame", r"iou/frame\d+"), ("learning rate", r"lr"),
          ("samples per second", r"samples_per_second"))


def read_scalars(folder: str) -> dict[str, tuple[list[int], list[float]]]:
    """tag → (steps, values) from the TensorBoard event files under `folder` (every run that wrote there)."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    accumulator = EventAccumulator(folder, size_guidance={"scalars": 0})  # 0: keep every point
    accumulator.Reload()
    out = {}
    for tag in accumulator.Tags().get("scalars", []):
        events = {e.step: e.value for e in accumulator.Scalars(tag)}  # a resumed run rewrites steps: last wins
        steps = sorted(events)
        out[tag] = (steps, [events[s] for s in steps])
    return out


def write_curves(tensorboard_dir: str, path: str) -> str | None:
    """Plot loss and IoU per frame, learning rate and throughput over steps into `path`; None without scalars."""
    scalars = read_scalars(tensorboard_dir) if os.path.isdir(tensorboard_dir) else {}
    if not scalars:
        return None
    import io

    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, axes = plt.subplots(2, 2, figsize=(10, 6))
    for ax, (title, pattern) in zip(axes.flat, PANELS):
        for tag in sorted(t for t in scalars if re.fullmatch(pattern, t)):
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
