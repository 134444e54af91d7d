"""ONNX Runtime runs the encoder and the refine head on the CPU (TEST_BACKEND onnxruntime).

On a CPU the convolutions are nearly all of a frame's cost: ResNet DeepLabv3+ (~260 GFLOP at
481x849) and the refine head (~44 GFLOP). ONNX Runtime runs the encoder in 0.6x-1.0x PyTorch eager's
time there (tools/bench_model.py --only backends). Everything between them (FrameCache, LTM, STA,
the window) stays in PyTorch. Both graphs are exported once per set of weights into DIR_ONNX_CACHE
(inference/backends/onnx_export.py) and used only while their manifest vouches for them
(utils/verified_cache.py); `python -m tools.export_onnx` exports ahead of time.
"""
from __future__ import annotations

import importlib.util
import logging
import os
from typing import Sequence

import numpy as np
import torch

from inference.backends.base import Backend
from inference.backends.onnx_export import (
    ENCODER_FILE,
    GRAPH_FILES,
    HEAD_FILE,
    export_model,
    weights_digest,
)
from inference.backends.quantization import QUANTIZED_PARTS, Calibration, int8_files, int8_key, quantize
from inference.options import InferenceOptions
from networks.lsta import LSTA
from utils.errors import MissingFileError, UserError
from utils.verified_cache import CacheEntry, VerifiedCache

log = logging.getLogger("lsta.inference")
CPU_PRECISIONS = ("float32", "tf32", "int8")  # tf32 is a CUDA matmul setting: on a CPU it is float32


class OnnxRuntimeError(UserError, RuntimeError):
    """ONNX Runtime could not open or run a graph."""


def _first_line(err: BaseException) -> str:
    lines = [line.strip() for line in str(err).splitlines() if line.strip()]
    return f"{type(err).__name__}: {lines[0][:300] if lines else ''}"


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
        try:
            self.session = onnxruntime.InferenceSession(path, options, providers=["CPUExecutionProvider"])
        except Exception as err:  # onnxruntime raises its own types (InvalidProtobuf, Fail, ...) for bad files
            raise OnnxRuntimeError(f"onnxruntime cannot open {path} ({_first_line(err)})") from None
        self.inputs = [i.name for i in self.session.get_inputs()]

    def __call__(self, *tensors: torch.Tensor) -> torch.Tensor:
        """The graph's output for these inputs, as a CPU tensor."""
        feed = {name: np.ascontiguousarray(t.detach().cpu().float().numpy()) for name, t in zip(self.inputs, tensors)}
        try:
            return torch.from_numpy(self.session.run(None, feed)[0])
        except Exception as err:  # onnxruntime's own error types
            raise OnnxRuntimeError(f"onnxruntime failed running {self.path} on inputs of shape "
                                   f"{[tuple(t.shape) for t in tensors]} ({_first_line(err)})") from None


class OnnxRuntimeBackend(Backend):
    """The cached, verified export of the model's weights, run by ONNX Runtime; int8 once calibrated."""
    name = "onnxruntime"

    def __init__(self, model: LSTA, options: InferenceOptions, device: torch.device) -> None:
        super().__init__(model, options, device)
        self.key = weights_digest(model)
        self.cache = VerifiedCache(options.onnx_cache, log)
        entry = CacheEntry(self.key[:24], self.key, GRAPH_FILES, "the onnxruntime export of these weights",
                           " (once per set of weights; about 40 s for ResNet-101)")
        self.float_folder = self._verified(entry, lambda folder: export_model(model, folder))
        self.int8 = options.precision == "int8"
        self.folder = None if self.int8 else self.float_folder  # int8: once calibrate() has quantized

    def _verified(self, entry: CacheEntry, build) -> str:
        """The entry's folder with its graphs opened; files the manifest vouches for, yet unusable here: built again."""
        folder = self.cache.get(entry, build)
        try:
            self._open(folder)
        except OnnxRuntimeError as err:
            folder = self.cache.get(entry, build, rebuild_reason=str(err))
            self._open(folder)
        return folder

    def _open(self, folder: str) -> None:
        self.encode = OnnxGraph(os.path.join(folder, ENCODER_FILE))
        self.head = OnnxGraph(os.path.join(folder, HEAD_FILE))

    @property
    def needs_calibration(self) -> bool:
        return self.folder is None

    def calibrate(self, images: list[torch.Tensor]) -> None:
        """Quantize the graphs on these frames (cached by weights and calibration), then run them in int8."""
        if not self.int8:
            return
        quantize_head = HEAD_FILE in QUANTIZED_PARTS
        if quantize_head:
            self._open(self.float_folder)  # the float graphs give the head's calibration inputs
        # Only a quantized head needs its inputs: computing them runs the float encoder on every frame.
        calibration = Calibration(images, self._head_inputs(images) if quantize_head else [])
        key = int8_key(self.key, calibration, QUANTIZED_PARTS)
        entry = CacheEntry(f"{key[:24]}-int8", key, int8_files(QUANTIZED_PARTS),
                           "the int8 onnxruntime export of these weights and calibration frames",
                           " (once per set of weights and calibration frames; about a minute for ResNet-101)")
        self.folder = self._verified(entry, lambda folder: quantize(self.float_folder, folder, calibration,
                                                                    QUANTIZED_PARTS))

    @torch.inference_mode()
    def _head_inputs(self, images: list[torch.Tensor]) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """What the head gets on the calibration frames, each one the query with the others in memory."""
        caches = [self.model.cache_frames(self.encode(image)) for image in images]
        inputs: list[tuple[torch.Tensor, torch.Tensor]] = []

        def record(ltm_out: torch.Tensor, sta_out: torch.Tensor) -> torch.Tensor:
            inputs.append((ltm_out.clone(), sta_out.clone()))
            return ltm_out

        for i, query in enumerate(caches):
            others = caches[:i] + caches[i + 1:] or [query]
            self.model.segment_cached(query, others[:-1] or others, others[-1], record)
        return inputs

    @classmethod
    def refusal(cls, device: torch.device, precision: str, torch_only: Sequence[str]) -> str | None:
        if torch_only:
            return f"{torch_only[0]} is a PyTorch option: use TEST_BACKEND torch (or auto) with it"
        if device.type != "cpu":
            return f"TEST_BACKEND onnxruntime runs on the CPU, not on {device}: use torch (or auto) there"
        if precision not in CPU_PRECISIONS:
            return f"TEST_BACKEND onnxruntime runs in float32 or int8: TEST_PRECISION {precision} needs torch"
        return None

    @classmethod
    def preferred(cls, device: torch.device, precision: str, torch_only: Sequence[str]) -> bool:
        # tools/bench_model.py: a frame in 0.64x-0.73x the authors' time on a CPU, PyTorch's 0.74x-0.94x.
        return (cls.refusal(device, precision, torch_only) is None
                and bool(importlib.util.find_spec("onnxruntime")))
