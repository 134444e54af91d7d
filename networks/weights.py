"""Weights files of the networks: LSTA checkpoints (architecture checked), pretrained encoders, the STM teacher.

This project's checkpoints record the architecture they were trained with (`model_args`; older
ones only their whole config). A file without any record, such as the authors' `best_LSTA.pth`,
is taken to be of the default architecture. A setting given on the command line that contradicts
the record is one error naming both architectures, and so is a file whose entries do not fit.
"""
from __future__ import annotations

from typing import Any

from torch import nn

from networks.checkpoints import WHAT, LstaCheckpoint, read_lsta
from networks.lsta import LSTA, ModelArgs
from utils.checkpoint import (
    CheckpointError,
    LoadReport,
    LoadRule,
    load_state,
    read_checkpoint,
    state_dict_of,
)

# The DeepLab classifier of CFBI's file and BN counters have no counterpart in our encoder.
_DEEPLAB_SKIP = ("decoder.last_conv.8.",)


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
    ckpt = read_lsta(path)
    model = LSTA(model_args_for(ckpt.model_args, cfg, path))
    return model, load_into(model, ckpt)


def load_into(model: LSTA, ckpt: LstaCheckpoint) -> LoadReport:
    """Load a read checkpoint into `model`: every model entry and no unknown one, or one error."""
    path, state = ckpt.path, ckpt.state_dict()
    recorded = ckpt.model_args
    if recorded is not None and recorded != model.args:
        raise CheckpointError(f"{path} is a {recorded.describe()} model; it cannot load into a "
                              f"{model.args.describe()} model")
    try:
        return load_state(model, state, WHAT, path, LoadRule(min_fraction=1.0, allow_unexpected=False))
    except CheckpointError as err:
        raise CheckpointError(f"{err}; the model here is {model.args.describe()}") from None


def load_lsta_weights(model: LSTA, path: str) -> LoadReport:
    """The LSTA weights file `path` into an existing `model` (see load_into)."""
    return load_into(model, read_lsta(path))


PRETRAINED_WHAT = "pretrained weights (PRETRAIN_MODEL)"


def load_pretrained(model: nn.Module, path: str, ckpt: Any = None) -> LoadReport:
    """Initialise LSTA from PRETRAIN_MODEL: an LSTA checkpoint (whole model) or a pretrained encoder.

    Encoder formats: CFBI's `resnet101-deeplabv3p.pth.tar` (backbone/aspp/decoder), torchvision's
    `deeplabv3_resnet101` state_dict (backbone only) and torchvision's ImageNet `resnet101`. The
    report covers the whole encoder, so a backbone-only file shows ASPP and decoder as missing.
    `ckpt`: the file's content when the caller has read it already (read_checkpoint).
    """
    what = PRETRAINED_WHAT
    ckpt = read_checkpoint(path, what) if ckpt is None else ckpt
    state = state_dict_of(ckpt, path, what)
    names = list(state)
    if any(n.startswith("feature_extractor.") for n in names):
        recorded = LstaCheckpoint(path, ckpt).model_args
        if recorded is not None and isinstance(model, LSTA) and recorded != model.args:
            raise CheckpointError(f"PRETRAIN_MODEL {path} is a {recorded.describe()} model; it cannot initialise a "
                                  f"{model.args.describe()} model")
        return load_state(model, state, "LSTA weights (PRETRAIN_MODEL)", path)
    has = lambda prefix: any(n.startswith(prefix) for n in names)  # noqa: E731
    if has("backbone.") and has("aspp."):
        what = "DeepLabv3+ encoder (CFBI format)"
        skipped = [n for n in names if n.startswith(_DEEPLAB_SKIP)]
        mapped = {"feature_extractor." + n: v for n, v in state.items() if n not in skipped}
        return load_state(model, mapped, what, path, LoadRule("feature_extractor.", 0.9, tuple(skipped)))
    if has("backbone.") and (has("classifier.") or has("aux_classifier.")):
        what = "torchvision deeplabv3 backbone"
        skipped = [n for n in names if not n.startswith("backbone.")]
        mapped = {"feature_extractor." + n: v for n, v in state.items() if n.startswith("backbone.")}
        return load_state(model, mapped, what, path, LoadRule("feature_extractor.", 0.9, tuple(skipped),
                                                                "feature_extractor.backbone."))
    if "conv1.weight" in state and has("layer1."):
        what = "torchvision ImageNet ResNet backbone"
        skipped = [n for n in names if n.startswith("fc.")]
        mapped = {"feature_extractor.backbone." + n: v for n, v in state.items() if not n.startswith("fc.")}
        return load_state(model, mapped, what, path, LoadRule("feature_extractor.", 0.9, tuple(skipped),
                                                                "feature_extractor.backbone."))
    raise CheckpointError(f"{what} {path} is in no known format: expected an LSTA checkpoint, CFBI's "
                          f"resnet101-deeplabv3p.pth.tar, torchvision deeplabv3_resnet101 or resnet101 weights")


def load_stm_teacher(model: nn.Module, path: str) -> LoadReport:
    """The official `STM_weights.pth` (`module.` prefixed) into networks.stm.STM."""
    what = "STM teacher weights (MODEL_DISTILLATION_PRETRAINED_TEACHER)"
    state = state_dict_of(read_checkpoint(path, what), path, what)
    return load_state(model, state, what, path, LoadRule(min_fraction=0.99))
