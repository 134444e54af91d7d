"""The tests' one way to build settings: a Config from a preset and overrides, as a user's command line would."""
from __future__ import annotations

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
