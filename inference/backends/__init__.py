"""The inference backends, by TEST_BACKEND name: a new backend is one file here and one line of BACKENDS.

`auto` picks the first backend, in BACKENDS' order, whose `preferred()` holds on the device at the
precision, and torch where none does; where the one it picked cannot be built (an export that
cannot be written, a runtime that fails), it falls back to torch with one warning.
"""
from __future__ import annotations

import logging
from typing import Sequence

import torch

from inference.backends.base import Backend
from inference.backends.onnxruntime_backend import OnnxRuntimeBackend
from inference.backends.torch_backend import TorchBackend
from inference.options import InferenceOptions
from networks.lsta import LSTA
from utils.errors import SettingError, UserError

BACKENDS: dict[str, type[Backend]] = {
    "onnxruntime": OnnxRuntimeBackend,
    "torch": TorchBackend,
}
FALLBACK = "torch"
log = logging.getLogger("lsta.inference")


def backend_names() -> tuple[str, ...]:
    """The values TEST_BACKEND takes: `auto` and every registered backend."""
    return ("auto", *BACKENDS)


def resolve_backend(backend: str, device: torch.device, precision: str, torch_only: Sequence[str] = ()) -> str:
    """The backend TEST_BACKEND names on `device` at `precision`; an error for a combination that cannot run.

    `torch_only`: the keys of the PyTorch-only options that are on (TEST_COMPILE, TEST_CHANNELS_LAST).
    """
    if backend == "auto":
        chosen = next((name for name, cls in BACKENDS.items() if cls.preferred(device, precision, torch_only)),
                      FALLBACK)
    elif backend in BACKENDS:
        chosen = backend
    else:
        raise SettingError(f"TEST_BACKEND {backend!r}: choose {', '.join(backend_names())}")
    reason = BACKENDS[chosen].refusal(device, precision, torch_only)
    if reason:
        raise SettingError(reason)
    return chosen


def build_backend(model: LSTA, options: InferenceOptions, device: torch.device) -> Backend:
    """The backend `options.backend` resolves to, built for `model`; `auto` falls back to torch where it cannot be."""
    name = resolve_backend(options.backend, device, options.precision, options.torch_only())
    try:
        return BACKENDS[name](model, options, device)
    except (UserError, OSError, RuntimeError) as err:
        if options.backend != "auto" or name == FALLBACK:
            raise
        # `auto` only ever speeds things up: whatever stops the faster backend (a read-only cache
        # folder, an exporter failure) leaves PyTorch doing the work, as it can.
        log.warning(f"TEST_BACKEND auto: {name} unavailable ({str(err).splitlines()[0]}); using {FALLBACK}")
        return BACKENDS[FALLBACK](model, options, device)
