"""The encoder and the refine head run by ONNX Runtime on the CPU (TEST_BACKEND onnxruntime).

On a CPU the convolutions are nearly all of a frame's cost: ResNet DeepLabv3+ (~260 GFLOP at
481x849) and the refine head (~44 GFLOP). ONNX Runtime runs the encoder in 0.6x-1.0x PyTorch eager's
time there (a third of it beside a busy process), the head in about the same time
(tools/bench_model.py --only backends). Everything between
them (FrameCache, LTM, STA, the window) stays in PyTorch. Both graphs are exported once per set
of weights, cached under a digest of the weights, the architecture and the network code; `python -m
tools.export_onnx` does it ahead of time.
"""
from __future__ import annotations

import contextlib
import hashlib
import io
import json
import logging
import os
import shutil
import subprocess
import sys
import tempfile
import warnings

import numpy as np
import torch
from torch import nn

from networks.lsta import LSTA, ModelArgs
from utils.errors import MissingFileError

log = logging.getLogger("lsta.inference")

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))  # where `python -m inference.onnx_backend` runs
ONNX_OPSET = 18
ENCODER_FILE, HEAD_FILE = "encoder.onnx", "head.onnx"  # weights beside each in <file>.data (ONNX external data)
# Frame sides the exported encoder accepts: eval sizes are 16k+1, at least 33 (config.MIN_FRAME_SIDE).
MIN_SIDE, MAX_SIDE = 33, 8193


def network_code_digest(folder: str = os.path.join(ROOT, "networks")) -> str:
    """A hex digest of the networks package's source: the graph an export traces is written there."""
    digest = hashlib.sha256()
    for name in sorted(n for n in os.listdir(folder) if n.endswith(".py")):
        with open(os.path.join(folder, name), "rb") as source:
            digest.update(name.encode() + source.read())
    return digest.hexdigest()


def weights_digest(model: LSTA) -> str:
    """A hex digest of the model's weights and buffers, its architecture, the code that computes it, and the
    exporter's versions: a cached export is reused only for the same computation."""
    digest = hashlib.sha256(json.dumps({"arch": model.args.to_record(), "opset": ONNX_OPSET,
                                        "code": network_code_digest(), "torch": torch.__version__},
                                       sort_keys=True).encode())
    for name, tensor in model.state_dict().items():
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().contiguous().view(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()[:24]


class _Head(nn.Module):
    """The refine head as a module of its own: LTM (B,32,h,w) and STA (B,16,h,w) outputs → logits."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, ltm_out: torch.Tensor, sta_out: torch.Tensor) -> torch.Tensor:
        return self.model.head(ltm_out, sta_out)


def export_model(model: LSTA, folder: str, parts: tuple[str, ...] = (ENCODER_FILE, HEAD_FILE)) -> None:
    """Export an LSTA's encoder and head (`parts`) to `folder`, for any batch and frame size.

    The export runs in a fresh Python process: torch.export reads the legacy TF32 flags, which
    raise in a process that has set the new ones (utils/precision.py, on any device). The folder
    appears whole or not at all: the export is written beside it and renamed into place.
    """
    parent = os.path.dirname(os.path.abspath(folder))
    os.makedirs(parent, exist_ok=True)
    staging = tempfile.mkdtemp(prefix=".export-", dir=parent)
    os.chmod(staging, 0o755)  # mkdtemp makes it private; the cache is shared like the checkpoints beside it
    try:
        weights = os.path.join(staging, "weights.pth")
        torch.save({"state_dict": model.state_dict(), "model_args": model.args.to_record()}, weights)
        done = subprocess.run([sys.executable, "-m", "inference.onnx_backend", weights, staging, *parts],
                              cwd=ROOT, capture_output=True, text=True, env={**os.environ, "CUDA_VISIBLE_DEVICES": ""})
        if done.returncode != 0:
            raise RuntimeError(f"exporting {folder} for onnxruntime failed:\n{done.stderr[-4000:]}")
        os.remove(weights)
        try:
            os.replace(staging, folder)
        except OSError:
            # Another process (a rank of a sharded evaluation) renamed the same export first: the
            # digest names the content, so theirs serves; anything else is a real error.
            if not all(os.path.isfile(os.path.join(folder, part)) for part in parts):
                raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _export_graphs(model: LSTA, folder: str, parts: list[str]) -> None:
    """The export itself (run by export_model in a process of its own)."""
    model = model.eval().cpu()
    batch = torch.export.Dim("batch", min=1, max=64)
    height, width = torch.export.Dim("height", min=MIN_SIDE, max=MAX_SIDE), torch.export.Dim("width", min=MIN_SIDE,
                                                                                             max=MAX_SIDE)
    fh, fw = torch.export.Dim("fh", min=9, max=MAX_SIDE // 4 + 1), torch.export.Dim("fw", min=9, max=MAX_SIDE // 4 + 1)
    graphs = [(model.feature_extractor, (torch.zeros(2, 3, 65, 97),), ({0: batch, 2: height, 3: width},),
               ["images"], ["features"], ENCODER_FILE),
              (_Head(model), (torch.zeros(1, 32, 17, 25), torch.zeros(1, 16, 17, 25)),
               ({2: fh, 3: fw}, {2: fh, 3: fw}), ["ltm_out", "sta_out"], ["logits"], HEAD_FILE)]
    for module, example, dynamic, inputs, outputs, name in (g for g in graphs if g[-1] in parts):
        # The exporter reports each pass on stdout and warns about things that do not concern us.
        with torch.no_grad(), warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
            warnings.simplefilter("ignore")
            torch.onnx.export(module, example, os.path.join(folder, name), dynamo=True, verbose=False,
                              opset_version=ONNX_OPSET, input_names=inputs, output_names=outputs,
                              dynamic_shapes=dynamic)


class OnnxGraph:
    """One exported graph run by ONNX Runtime on the CPU: float32 tensors in, a float32 tensor out."""

    def __init__(self, path: str, threads: int | None = None) -> None:
        try:
            import onnxruntime
        except ImportError:
            raise MissingFileError("TEST_BACKEND onnxruntime needs the onnxruntime package: pip install -r "
                                   "requirements.txt (or use TEST_BACKEND torch)") from None
        if not os.path.isfile(path):
            raise MissingFileError(f"{path} not found: a graph exported by python -m tools.export_onnx")
        options = onnxruntime.SessionOptions()
        # PyTorch's thread count, so that the backends compare (and share cores) alike.
        options.intra_op_num_threads = threads or torch.get_num_threads()
        options.inter_op_num_threads = 1
        self.path = path
        self.session = onnxruntime.InferenceSession(path, options, providers=["CPUExecutionProvider"])
        self.inputs = [i.name for i in self.session.get_inputs()]

    def __call__(self, *tensors: torch.Tensor) -> torch.Tensor:
        """The graph's output for these inputs, as a CPU tensor."""
        feed = {name: np.ascontiguousarray(t.detach().cpu().float().numpy()) for name, t in zip(self.inputs, tensors)}
        return torch.from_numpy(self.session.run(None, feed)[0])


class OnnxModel:
    """An LSTA's encoder and head in ONNX Runtime: `encode(images)` and `head(ltm_out, sta_out)` as LSTA's."""

    def __init__(self, folder: str) -> None:
        self.folder = folder
        self.encode = OnnxGraph(os.path.join(folder, ENCODER_FILE))
        self.head = OnnxGraph(os.path.join(folder, HEAD_FILE))

    @classmethod
    def for_model(cls, model: LSTA, cache: str) -> "OnnxModel":
        """The cached export of these weights under `cache`, exporting it first if there is none."""
        folder = os.path.join(cache, weights_digest(model))
        if not os.path.isfile(os.path.join(folder, HEAD_FILE)):
            log.info(f"exporting the encoder and head for onnxruntime into {folder} (once per set of weights; "
                     f"about 40 s for ResNet-101)")
            export_model(model, folder)
        return cls(folder)


if __name__ == "__main__":  # export_model's worker: weights file, output folder, parts
    _saved = torch.load(sys.argv[1], map_location="cpu", weights_only=True)
    _model = LSTA(ModelArgs.from_record(_saved["model_args"]))
    _model.load_state_dict(_saved["state_dict"])
    _export_graphs(_model, sys.argv[2], sys.argv[3:])
