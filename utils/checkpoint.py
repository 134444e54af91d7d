"""The one checkpoint loader (and atomic saver) of the project, with a report of what loaded.

Every file is read with `torch.load(weights_only=True)`: tensors, plain Python values and numpy
data only, so a downloaded file cannot run code. A file that needs more is refused with one line
that names it and points to `tools/convert_checkpoint.py --trust FILE`.
"""
from __future__ import annotations

import io
import logging
import os
import pickle
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn

from utils.errors import UserError
from utils.files import atomic_write

CONVERT_HINT = "python -m tools.convert_checkpoint --trust"


def _numpy_data_globals() -> list:
    """numpy's array and scalar reconstructors: data only, no code (pytorch-deeplab-xception files
    store `best_pred` as a numpy scalar). Listed under numpy 1.x and 2.x module names."""
    from numpy._core import multiarray
    allowed: list = [np.ndarray, np.dtype, multiarray.scalar, multiarray._reconstruct]
    for name in ("scalar", "_reconstruct"):
        allowed.append((getattr(multiarray, name), f"numpy.core.multiarray.{name}"))
    allowed += [type(np.dtype(code)) for code in "?bBhHiIlLqQefdgFDGOU"]
    return allowed


_SAFE_NUMPY = _numpy_data_globals()


class CheckpointError(UserError, RuntimeError):
    """A checkpoint file is missing, unreadable, unsafe, not a checkpoint, or does not fit the model."""


class UnsafeCheckpointError(CheckpointError):
    """A file that only an unrestricted unpickler (one that can run code) could read."""


@dataclass
class LoadReport:
    """What a load did for one part of the model: entries loaded, missing, unexpected, mismatched, skipped."""
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


def read_checkpoint(path: str, what: str, mmap: bool = False) -> Any:
    """torch.load(weights_only=True) on CPU, with one clear line for a missing, damaged or unsafe file.

    `mmap` maps tensors instead of reading them: a cheap check that a file is whole and loadable.
    """
    if not os.path.isfile(path):
        raise CheckpointError(f"{what} not found: {path}")
    try:
        with torch.serialization.safe_globals(_SAFE_NUMPY):
            return torch.load(path, map_location="cpu", weights_only=True, mmap=mmap)
    except pickle.UnpicklingError as err:
        if "weights only" in str(err).lower():
            raise UnsafeCheckpointError(
                f"{what} {path} refused: it holds Python objects ({_unsafe_names(path)}) that only an "
                f"unrestricted unpickler could load, and that can run code; if you trust its source, "
                f"convert it once into a safe file: {CONVERT_HINT} {path}") from None
        raise CheckpointError(f"{what} {path} is unreadable or truncated: {_first_line(err)}") from None
    except Exception as err:  # torch raises several types for damaged files
        if mmap and "mmap" in str(err):  # a legacy (pre-zip) file cannot be mapped: read it
            return read_checkpoint(path, what)
        raise CheckpointError(f"{what} {path} is unreadable or truncated: {_first_line(err)}") from None


def _unsafe_names(path: str) -> str:
    try:
        names = torch.serialization.get_unsafe_globals_in_checkpoint(path)
    except Exception:  # a legacy (non-zip) file: the names cannot be listed without unpickling
        return "objects outside tensors and plain values"
    allowed = {f"{getattr(g, '__module__', '')}.{getattr(g, '__qualname__', '')}" for g in _SAFE_NUMPY
               if not isinstance(g, tuple)} | {g[1] for g in _SAFE_NUMPY if isinstance(g, tuple)}
    names = [n for n in names if n not in allowed]
    return ", ".join(names[:3]) + (f" and {len(names) - 3} more" if len(names) > 3 else "")


def _first_line(err: BaseException) -> str:
    text = str(err).strip().splitlines()
    return f"{type(err).__name__}: {text[0] if text else ''}"


def state_dict_of(obj: Any, path: str, what: str) -> dict[str, torch.Tensor]:
    """The state_dict inside a checkpoint (`{'state_dict': …}`, `{'model': …}` or bare), `module.` stripped."""
    if isinstance(obj, dict):
        for key in ("state_dict", "model", "model_state"):
            if isinstance(obj.get(key), dict):
                obj = obj[key]
                break
    if not isinstance(obj, dict) or not obj or not all(torch.is_tensor(v) for v in obj.values()):
        raise CheckpointError(f"{what} {path} is not a checkpoint: expected a state_dict of tensors "
                              f"or a dict with 'state_dict'")
    return {k[len("module."):] if k.startswith("module.") else k: v for k, v in obj.items()}


@dataclass(frozen=True)
class LoadRule:
    """What a load must achieve: the part it reports on, how much of it must load, what it may leave."""
    scope: str = ""                  # report on the model's entries under this prefix
    min_fraction: float = 0.9        # of the entries under `required` (default: `scope`) that must load
    skipped: tuple[str, ...] = ()    # file entries known to have no counterpart
    required: str | None = None
    allow_unexpected: bool = True    # False: a file entry the model lacks, or of another shape, is an error


def load_state(model: nn.Module, state: dict[str, torch.Tensor], what: str, path: str,
               rule: LoadRule = LoadRule()) -> LoadReport:
    """Load matching entries of `state` into `model`, reporting on the part `rule.scope` as a whole.

    Fails when under `rule.min_fraction` of the entries under `rule.required` load, or, without
    `rule.allow_unexpected`, when the file holds entries the model lacks or has in another shape.
    The report goes to the `lsta.checkpoint` log.
    """
    scope, min_fraction, required = rule.scope, rule.min_fraction, rule.required
    target = model.state_dict()
    report = LoadReport(what, path, skipped=list(rule.skipped))
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
    required = scope if required is None else required
    needed = [k for k in target if k.startswith(required)]
    found = [k for k in needed if k in loadable]
    if len(found) < min_fraction * len(needed):
        raise CheckpointError(f"{what} {path} matches too little of the model: "
                              f"{len(found)} of {len(needed)} entries{' under ' + required if required else ''}"
                              f" ({len(report.mismatched)} of another shape, {len(report.unexpected)} unknown)")
    if not rule.allow_unexpected and (report.unexpected or report.mismatched):
        first = (report.unexpected + report.mismatched)[0]
        raise CheckpointError(f"{what} {path} does not fit the model: {len(report.unexpected)} entries it lacks and "
                              f"{len(report.mismatched)} of another shape (e.g. {first})")
    model.load_state_dict(loadable, strict=False)
    logging.getLogger("lsta.checkpoint").info(report.summary())
    return report


def save_checkpoint(payload: dict[str, Any], path: str) -> None:
    """Write a checkpoint atomically and durably (utils.files.atomic_write).

    A failed write (full disk, permissions) leaves any earlier file at `path` as it was, and raises
    CheckpointError naming the file and the cause.
    """
    buffer = io.BytesIO()
    try:
        torch.save(payload, buffer)  # in memory first: torch's zip writer hides the OS error of a failed write
        atomic_write(path, buffer.getbuffer(), durable=True)
    except (OSError, RuntimeError) as err:  # torch's writer reports a failed write as RuntimeError
        cause = err.strerror if isinstance(err, OSError) and err.strerror else _first_line(err)
        raise CheckpointError(cause if cause.startswith("could not write") else f"could not write {path}: {cause}") from None
