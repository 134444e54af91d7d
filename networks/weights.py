"""LSTA weights files: the model a checkpoint records, built and loaded with an architecture check.

This project's checkpoints record the architecture they were trained with (`model_args`; older
ones only their whole config). A file without any record, such as the authors' `best_LSTA.pth`,
is taken to be of the default architecture. A setting given on the command line that contradicts
the record is one error naming both architectures, and so is a file whose entries do not fit.
"""
from __future__ import annotations

from typing import Any

from networks.lsta import LSTA, ModelArgs
from utils.checkpoint import CheckpointError, LoadReport, load_state, read_checkpoint, state_dict_of

WHAT = "LSTA weights"


def recorded_args(ckpt: Any) -> ModelArgs | None:
    """The architecture a checkpoint records, or None for a file without a record."""
    if not isinstance(ckpt, dict):
        return None
    if isinstance(ckpt.get("model_args"), dict):
        return ModelArgs.from_record(ckpt["model_args"])
    if isinstance(ckpt.get("config"), dict):
        return ModelArgs.from_config(ckpt["config"])
    return None


def model_args_for(recorded: ModelArgs | None, cfg: Any, path: str) -> ModelArgs:
    """The record's architecture (default: the config's); a given setting that contradicts it is an error."""
    wanted = ModelArgs.from_config(cfg)
    if recorded is None:
        return wanted
    given = [ModelArgs.CONFIG_KEYS[k] for k, v in recorded.to_record().items()
             if cfg.given(ModelArgs.CONFIG_KEYS[k]) and getattr(wanted, k) != v]
    if given:
        raise CheckpointError(f"{path} is a {recorded.describe()} model, but {', '.join(given)} ask for "
                              f"{wanted.describe()}; drop those settings (and the preset that sets them): "
                              f"the checkpoint's own record is used")
    return recorded


def load_lsta(path: str, cfg: Any) -> tuple[LSTA, LoadReport]:
    """The LSTA `path` records (see model_args_for), with every entry of the file loaded."""
    ckpt = read_checkpoint(path, WHAT)
    args = model_args_for(recorded_args(ckpt), cfg, path)
    model = LSTA(args)
    return model, load_into(model, ckpt, path)


def load_into(model: LSTA, ckpt: Any, path: str) -> LoadReport:
    """Load a read checkpoint into `model`: every model entry and no unknown one, or one error."""
    state = state_dict_of(ckpt, path, WHAT)
    recorded = recorded_args(ckpt)
    if recorded is not None and recorded != model.args:
        raise CheckpointError(f"{path} is a {recorded.describe()} model; it cannot load into a "
                              f"{model.args.describe()} model")
    try:
        return load_state(model, state, WHAT, path, min_fraction=1.0, allow_unexpected=False)
    except CheckpointError as err:
        raise CheckpointError(f"{err}; the model here is {model.args.describe()}") from None


def load_lsta_weights(model: LSTA, path: str) -> LoadReport:
    """The LSTA weights file `path` into an existing `model` (see load_into)."""
    return load_into(model, read_checkpoint(path, WHAT), path)
