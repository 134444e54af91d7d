"""The one checkpoint loader (and atomic saver) of the project, with a report of what loaded."""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

# The DeepLab classifier of CFBI's file and BN counters have no counterpart in our encoder.
_DEEPLAB_SKIP = ("decoder.last_conv.8.",)


class CheckpointError(RuntimeError):
    """A checkpoint file is missing, unreadable, not a checkpoint, or does not fit the model."""


@dataclass
class LoadReport:
    """What a load did: entries loaded, missing from the file, unexpected, mismatched, skipped."""
    what: str
    path: str
    loaded: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)
    unexpected: list[str] = field(default_factory=list)
    mismatched: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)

    def summary(self) -> str:
        """A few lines for the console: counts, then the first names of each group."""
        lines = [f"loaded {self.what} from {self.path}: {len(self.loaded)} loaded, {len(self.missing)} missing, "
                 f"{len(self.unexpected)} unexpected, {len(self.mismatched)} shape mismatch, "
                 f"{len(self.skipped)} skipped"]
        for name in ("missing", "unexpected", "mismatched", "skipped"):
            items = getattr(self, name)
            if items:
                more = f" ... (+{len(items) - 5})" if len(items) > 5 else ""
                lines.append(f"  {name}: {', '.join(items[:5])}{more}")
        return "\n".join(lines)


def read_checkpoint(path: str, what: str) -> Any:
    """torch.load on CPU, with one clear error for a missing, unreadable or truncated file."""
    if not os.path.isfile(path):
        raise CheckpointError(f"{what} not found: {path}")
    try:
        return torch.load(path, map_location="cpu", weights_only=False)
    except Exception as err:  # torch raises several types for damaged files
        raise CheckpointError(f"{what} at {path} is unreadable or truncated: {type(err).__name__}: {err}") from None


def state_dict_of(obj: Any, path: str, what: str) -> dict[str, torch.Tensor]:
    """The state_dict inside a checkpoint (`{'state_dict': …}`, `{'model': …}` or bare), `module.` stripped."""
    if isinstance(obj, dict):
        for key in ("state_dict", "model", "model_state"):
            if isinstance(obj.get(key), dict):
                obj = obj[key]
                break
    if not isinstance(obj, dict) or not obj or not all(torch.is_tensor(v) for v in obj.values()):
        raise CheckpointError(f"{what} at {path} is not a checkpoint: expected a state_dict of tensors "
                              f"or a dict with 'state_dict'")
    return {k[len("module."):] if k.startswith("module.") else k: v for k, v in obj.items()}


def load_state(model: nn.Module, state: dict[str, torch.Tensor], what: str, path: str,
               scope: str = "", min_fraction: float = 0.9, skipped: list[str] | None = None) -> LoadReport:
    """Load matching entries of `state` into `model`; fail when under `min_fraction` of `scope` loads."""
    target = model.state_dict()
    report = LoadReport(what, path, skipped=list(skipped or []))
    loadable = {}
    for name, tensor in state.items():
        if name not in target:
            # BN counters of a file whose BN we keep frozen carry nothing.
            (report.skipped if name.endswith("num_batches_tracked") else report.unexpected).append(name)
        elif target[name].shape != tensor.shape:
            report.mismatched.append(f"{name} {tuple(tensor.shape)}≠{tuple(target[name].shape)}")
        else:
            loadable[name] = tensor
    in_scope = [k for k in target if k.startswith(scope)]
    report.loaded = [k for k in in_scope if k in loadable]
    report.missing = [k for k in in_scope if k not in loadable]
    if len(report.loaded) < min_fraction * len(in_scope):
        raise CheckpointError(f"{what} at {path} matches too little of the model: "
                              f"{len(report.loaded)} of {len(in_scope)} entries{' under ' + scope if scope else ''}.\n"
                              + report.summary())
    model.load_state_dict(loadable, strict=False)
    print(report.summary())
    return report


def load_lsta_weights(model: nn.Module, path: str, min_fraction: float = 0.9) -> LoadReport:
    """An LSTA checkpoint (ours, or the authors' `best_LSTA.pth`) into an LSTA model."""
    what = "LSTA weights"
    state = state_dict_of(read_checkpoint(path, what), path, what)
    return load_state(model, state, what, path, min_fraction=min_fraction)


def load_pretrained(model: nn.Module, path: str) -> LoadReport:
    """Initialise LSTA from PRETRAIN_MODEL: an LSTA checkpoint (whole model) or a pretrained encoder.

    Encoder formats: CFBI's `resnet101-deeplabv3p.pth.tar` (backbone/aspp/decoder), torchvision's
    `deeplabv3_resnet101` state_dict (backbone only) and torchvision's ImageNet `resnet101`.
    """
    what = "pretrained weights (PRETRAIN_MODEL)"
    state = state_dict_of(read_checkpoint(path, what), path, what)
    names = list(state)
    if any(n.startswith("feature_extractor.") for n in names):
        return load_state(model, state, "LSTA weights (PRETRAIN_MODEL)", path, min_fraction=0.9)
    has = lambda prefix: any(n.startswith(prefix) for n in names)  # noqa: E731
    if has("backbone.") and has("aspp."):
        what = "DeepLabv3+ encoder (CFBI format)"
        skipped = [n for n in names if n.startswith(_DEEPLAB_SKIP)]
        mapped = {"feature_extractor." + n: v for n, v in state.items() if n not in skipped}
        return load_state(model, mapped, what, path, "feature_extractor.", 0.9, skipped)
    if has("backbone.") and (has("classifier.") or has("aux_classifier.")):
        what = "torchvision deeplabv3 backbone"
        skipped = [n for n in names if not n.startswith("backbone.")]
        mapped = {"feature_extractor." + n: v for n, v in state.items() if n.startswith("backbone.")}
        return load_state(model, mapped, what, path, "feature_extractor.backbone.", 0.9, skipped)
    if "conv1.weight" in state and has("layer1."):
        what = "torchvision ImageNet ResNet backbone"
        skipped = [n for n in names if n.startswith("fc.")]
        mapped = {"feature_extractor.backbone." + n: v for n, v in state.items() if not n.startswith("fc.")}
        return load_state(model, mapped, what, path, "feature_extractor.backbone.", 0.9, skipped)
    raise CheckpointError(f"{what} at {path} is in no known format: expected an LSTA checkpoint, CFBI's "
                          f"resnet101-deeplabv3p.pth.tar, torchvision deeplabv3_resnet101 or resnet101 weights")


def load_stm_teacher(model: nn.Module, path: str) -> LoadReport:
    """The official `STM_weights.pth` (`module.` prefixed) into networks.stm.STM."""
    what = "STM teacher weights (MODEL_DISTILLATION_PRETRAINED_TEACHER)"
    state = state_dict_of(read_checkpoint(path, what), path, what)
    return load_state(model, state, what, path, min_fraction=0.99)


def save_checkpoint(payload: dict[str, Any], path: str) -> None:
    """Write atomically: a temporary file in the same folder, flushed, then renamed over `path`."""
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    tmp = f"{path}.tmp.{os.getpid()}"
    try:
        with open(tmp, "wb") as f:
            torch.save(payload, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)
