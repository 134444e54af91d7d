"""An LSTA's encoder and refine head exported as ONNX graphs, checked against PyTorch before they are kept.

The export runs in a fresh Python process (`python -m inference.backends.onnx_export`): torch.export
reads the legacy TF32 flags, which raise in a process that has set the new ones (utils/precision.py).
It hands the weights over as an LSTA checkpoint (networks/checkpoints.py), writes both graphs (weights
beside each in `<graph>.data`, ONNX external data), then runs each in ONNX Runtime on a small input and
refuses an export whose outputs stray from PyTorch's. The key of an export names the weights, the
architecture, the network code and the exporter's versions: an export is reused only for the same
computation (utils/verified_cache.py checks it at every use).
"""
from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import subprocess
import sys
import warnings

import torch
from torch import nn

from networks.checkpoints import read_lsta, save_lsta
from networks.lsta import LSTA
from utils.errors import UserError
from utils.fold_batchnorm import fold_batchnorm

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # where `python -m` runs
ONNX_OPSET = 18
EXPORT_FORMAT = 2  # how the graphs are laid out (2: BatchNorms folded); another format is another export
ENCODER_FILE, HEAD_FILE = "encoder.onnx", "head.onnx"
GRAPH_FILES = (ENCODER_FILE, ENCODER_FILE + ".data", HEAD_FILE, HEAD_FILE + ".data")
# Frame sides the exported encoder accepts: eval sizes are 16k+1, at least 33 (config.MIN_FRAME_SIDE).
MIN_SIDE, MAX_SIDE = 33, 8193
MAX_BATCH = 64
CHECK_TOLERANCE = 1e-3  # an export's largest difference to PyTorch, relative to PyTorch's largest magnitude


def network_code_digest(folder: str = os.path.join(ROOT, "networks")) -> str:
    """A hex digest of the networks package's source: the graph an export traces is written there."""
    digest = hashlib.sha256()
    for name in sorted(n for n in os.listdir(folder) if n.endswith(".py")):
        with open(os.path.join(folder, name), "rb") as source:
            digest.update(name.encode() + source.read())
    return digest.hexdigest()


def weights_digest(model: LSTA) -> str:
    """A hex digest of the model's weights and buffers, its architecture, the code that computes it, and the
    exporter's versions: the key of its export."""
    digest = hashlib.sha256(json.dumps({"arch": model.args.to_record(), "opset": ONNX_OPSET, "format": EXPORT_FORMAT,
                                        "code": network_code_digest(), "torch": torch.__version__},
                                       sort_keys=True).encode())
    for name, tensor in model.state_dict().items():
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().contiguous().view(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


class ExportError(UserError, RuntimeError):
    """The exporter failed, or its graphs compute something else than PyTorch."""


class _Head(nn.Module):
    """The refine head as a module of its own, BatchNorm folded: LTM (B,32,h,w) and STA (B,16,h,w) outputs → logits."""

    def __init__(self, model: LSTA) -> None:
        super().__init__()
        self.refine, self.pred = fold_batchnorm(model.refine), model.pred

    def forward(self, ltm_out: torch.Tensor, sta_out: torch.Tensor) -> torch.Tensor:
        return self.pred(self.refine(torch.cat([ltm_out, sta_out], dim=1)))


def export_model(model: LSTA, folder: str, parts: tuple[str, ...] = (ENCODER_FILE, HEAD_FILE)) -> None:
    """Export an LSTA's encoder and head (`parts`) into the existing `folder`, for any batch and frame size.

    Raises ExportError with the exporter's last words when the export fails or strays from PyTorch.
    """
    weights = os.path.join(folder, "weights.pth")
    save_lsta(weights, model)
    try:
        done = subprocess.run([sys.executable, "-m", "inference.backends.onnx_export", weights, folder, *parts],
                              cwd=ROOT, capture_output=True, text=True, env={**os.environ, "CUDA_VISIBLE_DEVICES": ""})
    finally:
        os.remove(weights)
    if done.returncode != 0:
        last = [line.strip() for line in done.stderr.splitlines() if line.strip()][-3:]
        raise ExportError(f"exporting the model for onnxruntime failed: {' / '.join(last) or 'no message'}")


def _graphs(model: LSTA) -> list[tuple[nn.Module, tuple, tuple, list[str], list[str], str]]:
    """(module, example inputs, dynamic shapes, input names, output names, file) of each graph."""
    batch = torch.export.Dim("batch", min=1, max=MAX_BATCH)
    height, width = torch.export.Dim("height", min=MIN_SIDE, max=MAX_SIDE), torch.export.Dim("width", min=MIN_SIDE,
                                                                                             max=MAX_SIDE)
    fh, fw = torch.export.Dim("fh", min=9, max=MAX_SIDE // 4 + 1), torch.export.Dim("fw", min=9, max=MAX_SIDE // 4 + 1)
    head_inputs = (torch.zeros(1, 32, 17, 25), torch.zeros(1, 16, 17, 25))
    # BatchNorms folded into their convolutions (as ONNX Runtime does to a float graph anyway): int8
    # quantization then sees one convolution with a bias where the model has two operations.
    return [(fold_batchnorm(model.feature_extractor), (torch.zeros(2, 3, 65, 97),), ({0: batch, 2: height, 3: width},),
             ["images"], ["features"], ENCODER_FILE),
            (_Head(model), head_inputs, ({2: fh, 3: fw}, {2: fh, 3: fw}), ["ltm_out", "sta_out"], ["logits"],
             HEAD_FILE)]


def _export_graphs(model: LSTA, folder: str, parts: list[str]) -> None:
    """The export itself and its check (run by export_model in a process of its own)."""
    import onnxruntime

    model = model.eval().cpu()
    generator = torch.Generator().manual_seed(0)
    for module, example, dynamic, inputs, outputs, name in (g for g in _graphs(model) if g[-1] in parts):
        path = os.path.join(folder, name)
        # The exporter reports each pass on stdout and warns about things that do not concern us.
        with torch.no_grad(), warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
            warnings.simplefilter("ignore")
            torch.onnx.export(module, example, path, dynamo=True, verbose=False, opset_version=ONNX_OPSET,
                              input_names=inputs, output_names=outputs, dynamic_shapes=dynamic)
        # Another size than the example's: the dynamic shapes must hold too.
        probe = tuple(torch.randn(t.shape[0], t.shape[1], t.shape[2] + 16, t.shape[3] + 16, generator=generator)
                      for t in example)
        with torch.no_grad():
            want = module(*probe)
        session = onnxruntime.InferenceSession(path, providers=["CPUExecutionProvider"])
        got = torch.from_numpy(session.run(None, {n: t.numpy() for n, t in zip(inputs, probe)})[0])
        error = float((got - want).abs().max() / want.abs().max().clamp_min(1e-12))
        if got.shape != want.shape or not error <= CHECK_TOLERANCE:
            raise SystemExit(f"{name}: the export's output strays from PyTorch's (shape {tuple(got.shape)} vs "
                             f"{tuple(want.shape)}, relative difference {error:.1e} > {CHECK_TOLERANCE:.0e})")


if __name__ == "__main__":  # export_model's worker: weights file, output folder, parts
    _saved = read_lsta(sys.argv[1])
    _model = LSTA(_saved.model_args)
    _model.load_state_dict(_saved.state_dict())
    _export_graphs(_model, sys.argv[2], sys.argv[3:])
