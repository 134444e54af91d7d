"""The tests' one way to build settings: a Config from a preset and overrides, as a user's command line would."""
from __future__ import annotations

import json
import os

import torch

from config import Config
from utils.distributed import DistInfo

CPU = DistInfo(0, 1, 0, torch.device("cpu"))
# eval.py's --opts for the toy weights: a short window and batched encoding, so every path of the
# schedule runs on the 12-frame toy videos.
TOY_EVAL = ["TEST_BACKEND", "torch", "MODEL_MAX_MEM", "4", "DATA_WORKERS", "0", "TEST_ENCODE_BATCH", "3"]
# train.py's --opts for a few-second toy run.
TINY = ["DATA_RANDOMCROP", "(65, 65)", "DATA_CURR_SEQ_LEN", "2", "TRAIN_BATCH_SIZE", "2", "DATA_WORKERS", "0",
        "TRAIN_LOG_STEP", "1", "TRAIN_WARM_UP_STEPS", "2", "DATA_SHORT_EDGE_LEN", "70"]


def preset_config(preset: str | None = None, opts: list[str] = (), **overrides) -> Config:
    """Config() with `preset`, then `opts` (KEY VALUE strings, as --opts), then `overrides` (not validated)."""
    cfg = Config()
    if preset:
        cfg.apply_preset(preset)
    cfg.apply_opts(list(opts))
    for key, value in overrides.items():
        cfg.set(key, value)
    return cfg


def tiny_cfg(toy_root: str, tmp_path, **overrides) -> Config:
    """The toy preset shrunk to a few seconds a run (TINY), on the toy data, its run folders under `tmp_path`."""
    cfg = preset_config("toy", TINY, DIR_DATA=toy_root, DIR_ROOT=str(tmp_path))
    for key, value in overrides.items():
        cfg.set(key, value)
    return cfg


def small_cfg(**overrides) -> Config:
    """The authors' settings with a ResNet-18 backbone: the model's tests at CPU size."""
    return preset_config(MODEL_BACKBONE="resnet18", **overrides)


def summary(cfg: Config) -> dict:
    """The run's summary.json (tests read it instead of the log)."""
    with open(os.path.join(cfg.DIR_RESULT, "summary.json")) as f:
        return json.load(f)
