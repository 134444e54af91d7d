"""The encoder run by ONNX Runtime on the CPU (TEST_BACKEND onnxruntime), exported once per set of weights.

ResNet DeepLabv3+ is ~80 % of a frame's cost on a CPU; ONNX Runtime runs the same graph in ~0.7 of
PyTorch eager's time there (tools/bench_model.py) and suffers far less when other processes share
the cores. The head stays in PyTorch (FrameCache, the window). The exported file is cached under
a digest of the encoder's weights and architecture, so a checkpoint is exported once (tens of
seconds for ResNet-101), and `python -m tools.export_onnx` can do it ahead of time.
"""
from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import shutil
import tempfile
import warnings

import numpy as np
import torch
from torch import nn

from utils.errors import MissingFileError

ONNX_OPSET = 18
MODEL_FILE = "encoder.onnx"  # its weights beside it in encoder.onnx.data (ONNX external data)
# Frame sides the exported graph accepts: eval sizes are 16k+1, at least 33 (config.MIN_FRAME_SIDE).
MIN_SIDE, MAX_SIDE = 33, 8193


def encoder_digest(encoder: nn.Module, architecture: dict) -> str:
    """A hex digest of the encoder's weights and buffers, its architecture, and the exporter's versions."""
    digest = hashlib.sha256(json.dumps({"arch": architecture, "opset": ONNX_OPSET, "torch": torch.__version__},
                                       sort_keys=True).encode())
    for name, tensor in encoder.state_dict().items():
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().contiguous().view(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()[:24]


def export_encoder(encoder: nn.Module, folder: str) -> str:
    """Export `encoder` (images (B,3,H,W) → features) to `folder`/encoder.onnx, any batch and frame size.

    The folder appears whole or not at all: the export is written beside it and renamed into place.
    """
    parent = os.path.dirname(os.path.abspath(folder))
    os.makedirs(parent, exist_ok=True)
    staging = tempfile.mkdtemp(prefix=".export-", dir=parent)
    try:
        encoder = encoder.eval().cpu()
        batch, height, width = (torch.export.Dim(n, min=lo, max=hi) for n, lo, hi in
                                (("batch", 1, 64), ("height", MIN_SIDE, MAX_SIDE), ("width", MIN_SIDE, MAX_SIDE)))
        example = torch.zeros(2, 3, 65, 97)
        # The exporter reports each pass on stdout and warns about things that do not concern us.
        with torch.no_grad(), warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
            warnings.simplefilter("ignore")
            torch.onnx.export(encoder, (example,), os.path.join(staging, MODEL_FILE), dynamo=True,
                              opset_version=ONNX_OPSET, input_names=["images"], output_names=["features"],
                              dynamic_shapes=({0: batch, 2: height, 3: width},), verbose=False)
        try:
            os.replace(staging, folder)
        except OSError:
            # Another process (a rank of a sharded evaluation) renamed the same export first: the
            # digest names the content, so theirs serves; anything else is a real error.
            if not os.path.isfile(os.path.join(folder, MODEL_FILE)):
                raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return os.path.join(folder, MODEL_FILE)


class OnnxEncoder:
    """Normalised BGR images (B,3,H,W) → stride-4 features, computed by ONNX Runtime on the CPU."""

    def __init__(self, path: str, threads: int | None = None) -> None:
        try:
            import onnxruntime
        except ImportError:
            raise MissingFileError("TEST_BACKEND onnxruntime needs the onnxruntime package: pip install -r "
                                   "requirements.txt (or use TEST_BACKEND torch)") from None
        if not os.path.isfile(path):
            raise MissingFileError(f"{path} not found: an encoder exported by python -m tools.export_onnx")
        options = onnxruntime.SessionOptions()
        # PyTorch's thread count, so that the backends compare (and share cores) alike.
        options.intra_op_num_threads = threads or torch.get_num_threads()
        options.inter_op_num_threads = 1
        self.path = path
        self.session = onnxruntime.InferenceSession(path, options, providers=["CPUExecutionProvider"])

    @classmethod
    def for_model(cls, encoder: nn.Module, architecture: dict, cache: str) -> "OnnxEncoder":
        """The cached export of these weights under `cache`, exporting it first if there is none."""
        folder = os.path.join(cache, encoder_digest(encoder, architecture))
        path = os.path.join(folder, MODEL_FILE)
        if not os.path.isfile(path):
            export_encoder(encoder, folder)
        return cls(path)

    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        """Features (B,256,⌈H/4⌉,⌈W/4⌉) as a float32 CPU tensor."""
        array = np.ascontiguousarray(images.detach().cpu().float().numpy())
        return torch.from_numpy(self.session.run(None, {"images": array})[0])
