"""LSTA checkpoint files: what they hold and how they are named, written and read here only.

A checkpoint is a dict of tensors and plain values (read with `weights_only=True`, utils/checkpoint.py):
- `state_dict`: the model's weights, without `module.`;
- `model_args`: the architecture (ModelArgs) they belong to; older files record only `config`;
- `step` and `config`: the training step and the settings of the run that wrote it;
- the training state an exact resume needs: `optimizer`, `scaler`, `rng` (every rank's) and
  `accumulated_grads` (the authors' never-zeroed encoder gradients).
The authors' `best_LSTA.pth` holds a bare state_dict (or one under `state_dict`/`model`): no record,
so it is taken to be the default architecture. A run folder's checkpoints are `save_step_<N>.pth`.
"""
from __future__ import annotations

import os
import re
from dataclasses import dataclass
from typing import Any

import torch

from networks.lsta import LSTA, ModelArgs
from utils.checkpoint import (
    CheckpointError,
    read_checkpoint,
    save_checkpoint,
    state_dict_of,
)

WHAT = "LSTA weights"
TRAINING_WHAT = "training checkpoint"
TRAINING_STATE = ("optimizer", "scaler", "rng", "accumulated_grads")
CHECKPOINT_NAME = re.compile(r"^save_step_(\d+)\.pth$")


def checkpoint_file(folder: str, step: int) -> str:
    """The path of step `step`'s checkpoint in a run's checkpoint folder."""
    return os.path.join(folder, f"save_step_{step}.pth")


def checkpoints_newest_first(folder: str) -> list[tuple[int, str]]:
    """(step, path) of every `save_step_<N>.pth` in `folder`, newest first."""
    if not os.path.isdir(folder):
        return []
    found = [(int(m.group(1)), os.path.join(folder, name))
             for name in os.listdir(folder) if (m := CHECKPOINT_NAME.match(name))]
    return sorted(found, reverse=True)


@dataclass(frozen=True)
class LstaCheckpoint:
    """A read checkpoint: its weights, the architecture and settings it records, its training state."""
    path: str
    content: Any

    def state_dict(self, what: str = WHAT) -> dict[str, torch.Tensor]:
        """The weights, `module.` stripped; one error when the file holds none."""
        return state_dict_of(self.content, self.path, what)

    @property
    def model_args(self) -> ModelArgs | None:
        """The architecture the file records, or None for a file without a record (the authors')."""
        if isinstance(self.content, dict) and isinstance(self.content.get("model_args"), dict):
            return ModelArgs.from_record(self.content["model_args"])
        if self.config:
            return ModelArgs.from_config(self.config)
        return None

    @property
    def step(self) -> int | None:
        """The training step the file was saved at, or None."""
        step = self.content.get("step") if isinstance(self.content, dict) else None
        return step if isinstance(step, int) and not isinstance(step, bool) else None

    @property
    def config(self) -> dict[str, Any]:
        """The settings of the run that wrote it ({} for files without them)."""
        config = self.content.get("config") if isinstance(self.content, dict) else None
        return config if isinstance(config, dict) else {}

    def training_state(self, key: str, default: Any = None) -> Any:
        """One part of the training state (TRAINING_STATE), or `default` when the file lacks it."""
        if key not in TRAINING_STATE:
            raise KeyError(key)
        return self.content.get(key, default) if isinstance(self.content, dict) else default


def save_lsta(path: str, model: LSTA, step: int | None = None, config: dict[str, Any] | None = None,
              training: dict[str, Any] | None = None) -> None:
    """Write `model`'s weights with its architecture (and a step, settings, training state), atomically."""
    unknown = set(training or {}) - set(TRAINING_STATE)
    if unknown:
        raise KeyError(f"not training state: {sorted(unknown)}")
    payload: dict[str, Any] = {"state_dict": model.state_dict(), "model_args": model.args.to_record()}
    if step is not None:
        payload["step"] = step
    if config is not None:
        payload["config"] = config
    payload.update(training or {})
    save_checkpoint(payload, path)


def read_lsta(path: str, what: str = WHAT, mmap: bool = False) -> LstaCheckpoint:
    """An LSTA checkpoint (this project's, or the authors' bare state_dict); one error for anything unreadable.

    `mmap` maps tensors instead of reading them: a cheap check that a file is whole and loadable.
    """
    return LstaCheckpoint(path, read_checkpoint(path, what, mmap=mmap))


def read_training(path: str, mmap: bool = False) -> LstaCheckpoint:
    """A checkpoint written by this project's training: weights and a step at least."""
    ckpt = read_lsta(path, TRAINING_WHAT, mmap=mmap)
    if not isinstance(ckpt.content, dict) or "state_dict" not in ckpt.content or ckpt.step is None:
        raise CheckpointError(f"{path} is not a training checkpoint of this project (no state_dict and step)")
    return ckpt
