"""Convert a checkpoint you trust into one that loads safely (tensors and plain values only).

    python -m tools.convert_checkpoint --trust FILE [--out SAFE_FILE]

The project loads every file with `torch.load(weights_only=True)`, which cannot run code. Some
files in circulation hold Python objects (an argparse Namespace, a custom class), and only an
unrestricted unpickler reads them: one that runs whatever code the file names. Do that once,
here, for a file whose source you trust; the project then loads the safe copy. Tensors, numbers,
strings, lists and dicts are kept; numpy arrays become tensors; any other object is dropped and
listed. The source file is never modified, and an existing output is never overwritten.
"""
from __future__ import annotations

import argparse
import os
import sys
from typing import Any

import numpy as np
import torch

from utils.checkpoint import CheckpointError, read_checkpoint, save_checkpoint


def to_safe(value: Any, where: str, dropped: list[str]) -> Any:
    """`value` with everything but tensors and plain values removed (their places listed in `dropped`)."""
    if torch.is_tensor(value):
        return value
    if isinstance(value, (bool, int, float, str, bytes)) or value is None:
        return value
    if isinstance(value, np.ndarray) and value.dtype != object:
        return torch.from_numpy(np.ascontiguousarray(value))
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, dict):
        out = {}
        for key, item in value.items():
            if not isinstance(key, (str, int)):
                dropped.append(f"{where}[{key!r}] (key of type {type(key).__name__})")
                continue
            converted = to_safe(item, f"{where}[{key!r}]", dropped)
            if converted is not _DROPPED:
                out[key] = converted
        return out
    if isinstance(value, (list, tuple)):
        items = [to_safe(item, f"{where}[{i}]", dropped) for i, item in enumerate(value)]
        return type(value)(item for item in items if item is not _DROPPED)
    dropped.append(f"{where} ({type(value).__module__}.{type(value).__qualname__})")
    return _DROPPED


_DROPPED = object()


def convert(source: str, target: str) -> list[str]:
    """Load `source` with the unrestricted unpickler, write its safe part to `target`; returns what was dropped."""
    obj = torch.load(source, map_location="cpu", weights_only=False)  # the user vouched for this file
    dropped: list[str] = []
    safe = to_safe(obj, "checkpoint", dropped)
    if safe is _DROPPED:
        raise CheckpointError(f"{source} holds no tensors or plain values to keep")
    save_checkpoint(safe, target)
    read_checkpoint(target, "converted checkpoint")  # proves it now loads with weights_only=True
    return dropped


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("file", nargs="?", help=argparse.SUPPRESS)
    parser.add_argument("--trust", metavar="FILE", help="the checkpoint to convert; you vouch for its source")
    parser.add_argument("--out", default=None,
                        help="where to write the safe copy (default: FILE with .safe before its extension)")
    args = parser.parse_args()
    if not args.trust:
        sys.exit("error: name the file with --trust FILE: converting runs the code a file may hold, so do it "
                 "only for a file whose source you trust")
    source = args.trust
    if not os.path.isfile(source):
        sys.exit(f"error: checkpoint not found: {source}")
    stem, ext = os.path.splitext(source[:-len(".tar")] if source.endswith(".pth.tar") else source)
    target = args.out or f"{stem}.safe{ext}{'.tar' if source.endswith('.pth.tar') else ''}"
    if os.path.exists(target):
        sys.exit(f"error: {target} exists; remove it or pass another --out")
    try:
        dropped = convert(source, target)
    except CheckpointError as err:
        sys.exit(f"error: {err}")
    except Exception as err:  # the file is not a torch checkpoint at all
        sys.exit(f"error: {source} could not be loaded: {type(err).__name__}: {str(err).splitlines()[0]}")
    for place in dropped:
        print(f"dropped {place}")
    print(f"wrote {target}: loads with weights_only=True; use it in place of {source}")


if __name__ == "__main__":
    main()
