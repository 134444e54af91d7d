"""Which checkpoint a run uses, and the settings its record supplies: one way for eval.py, demo.py and the API.

A checkpoint of this project records the settings it was trained with. The keys of
RECORDED_KEYS that the user did not give (no preset, --opts or assignment set them) are taken from
that record before the settings are validated, so the same checkpoint segments a video the same
way through `eval.py --video`, `VideoSegmenter.from_checkpoint` and the demo page.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any

from config import Config
from networks.checkpoints import checkpoints_newest_first, read_lsta
from utils.checkpoint import CheckpointError
from utils.errors import MissingFileError

# The model's own window (MODEL_MAX_MEM: the toy preset trains and evaluates with 5) and the data
# it was trained beside (so `eval.py --ckpt_path log/toy/ckpt/save_step_300.pth` evaluates the toy
# model on the toy data, no preset needed).
RECORDED_KEYS = ("MODEL_MAX_MEM", "DIR_DATA")
RELEASED_WEIGHTS_HINT = ("the authors' released weights, best_LSTA.pth, go in the project root (eval.sh's default), "
                         "or pass --ckpt_path to one of your log/<exp>/ckpt/*.pth")


@dataclass(frozen=True)
class ChosenCheckpoint:
    """The weights a run uses: their path, the tag of its results folder, the settings taken from their record."""
    path: str
    tag: str                                   # step_<N> for this project's checkpoints, else the file's name
    adopted: dict[str, Any] = field(default_factory=dict)

    def describe_adopted(self) -> list[str]:
        """One log line per adopted setting."""
        return [f"{key} {value!r} from {self.path}'s record (pass --opts {key} ... to override)"
                for key, value in self.adopted.items()]


def checkpoint_path(cfg: Config, path: str | None) -> str:
    """`path`, else TEST_CKPT_PATH, else the newest checkpoint of EXP_NAME; a run's ckpt folder means its newest."""
    path = path or cfg.TEST_CKPT_PATH
    if not path:
        found = checkpoints_newest_first(cfg.DIR_CKPT)
        if not found:
            raise CheckpointError(f"no checkpoint to evaluate: {cfg.DIR_CKPT} (EXP_NAME {cfg.EXP_NAME}) holds no "
                                  f"save_step_*.pth; train first, or pass --ckpt_path FILE (e.g. best_LSTA.pth, "
                                  f"the authors' weights)")
        return found[0][1]
    if os.path.isdir(path):
        found = checkpoints_newest_first(path)
        if not found:
            raise CheckpointError(f"LSTA weights {path} is a folder holding no save_step_*.pth: pass a checkpoint "
                                  f"file, or a run's ckpt/ folder")
        return found[0][1]
    if os.path.islink(path) and not os.path.exists(path):
        raise MissingFileError(f"LSTA weights {path} is a symbolic link that leads nowhere (a loop, or a missing "
                               f"target: {os.readlink(path)})")
    return path


def adopt_checkpoint_settings(cfg: Config, path: str | None) -> ChosenCheckpoint:
    """The checkpoint for `path` (see checkpoint_path), with RECORDED_KEYS adopted into the not yet validated `cfg`."""
    path = checkpoint_path(cfg, path)
    try:
        ckpt = read_lsta(path, mmap=True)
    except CheckpointError as err:
        raise CheckpointError(f"{err}; {RELEASED_WEIGHTS_HINT}") from None
    tag = f"step_{ckpt.step}" if ckpt.step is not None else os.path.splitext(os.path.basename(path))[0]
    return ChosenCheckpoint(path, tag, cfg.adopt(ckpt.config, RECORDED_KEYS))


def settings_for_checkpoint(cfg: Config | None, path: str) -> tuple[Config, ChosenCheckpoint]:
    """A validated, read-only copy of `cfg` (default: the authors' settings) with `path`'s recorded settings adopted."""
    settings = (cfg or Config()).copy().validate()
    chosen = adopt_checkpoint_settings(settings, path)
    return settings.validate().freeze(), chosen
