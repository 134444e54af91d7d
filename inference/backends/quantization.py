"""TEST_PRECISION int8: the exported graphs quantized by ONNX Runtime's static quantization, on calibration frames.

QDQ format, weights int8 per output channel, activations uint8 with ranges from the calibration
frames (MinMax). On a CPU without VNNI (AVX2 only) weights keep 7 bits (`reduce_range`): there
ONNX Runtime's uint8 × int8 kernels add pairs of products in 16 bits, which 8-bit weights can
overflow. LTM, STA and the window stay float32 in PyTorch, so LTM's exponential is never
quantized. What the calibration is, which parts are quantized and why: docs/evaluation.md,
"int8".
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import shutil
from dataclasses import dataclass
from typing import Iterator

import numpy as np
import torch

from inference.backends.onnx_export import ENCODER_FILE, HEAD_FILE

CALIBRATION_FRAMES = 8   # frames the quantization ranges are measured on
CALIBRATE_METHOD = "MinMax"  # how ranges are measured (onnxruntime.quantization.CalibrationMethod)
FLOAT_CONVOLUTIONS = ("last",)   # convolutions of the encoder kept in float32: "first", "last"
QUANTIZED_PARTS = (ENCODER_FILE,)  # the head stays float32: quantized, it cost agreement (docs/evaluation.md)


@dataclass(frozen=True)
class Calibration:
    """The inputs the quantization ranges are measured on: preprocessed frames, and the head's inputs on them."""
    images: list[torch.Tensor]                           # (1,3,H,W) each, as the encoder gets them
    head_inputs: list[tuple[torch.Tensor, torch.Tensor]]  # (ltm_out, sta_out), as the head gets them

    def digest(self) -> str:
        """A hex digest of every calibration input: an int8 export is reused only for the same ones."""
        digest = hashlib.sha256()
        for tensor in self.images + [t for pair in self.head_inputs for t in pair]:
            array = np.ascontiguousarray(tensor.detach().cpu().float().numpy())
            digest.update(str(array.shape).encode() + array.tobytes())
        return digest.hexdigest()


def cpu_has_vnni() -> bool:
    """Whether this CPU has 8-bit dot-product instructions (AVX-512 VNNI, AVX-VNNI or AMX)."""
    try:
        with open("/proc/cpuinfo") as f:
            flags = next((line for line in f if line.startswith("flags")), "").split()
    except OSError:
        return False
    return bool({"avx512_vnni", "avx_vnni", "amx_int8"} & set(flags))


def quantization_settings() -> dict:
    """The quantization's settings (part of an int8 export's key)."""
    import onnxruntime
    return {"format": "QDQ", "per_channel": True, "weights": "int8", "activations": "uint8",
            "reduce_range": not cpu_has_vnni(), "calibrate": CALIBRATE_METHOD, "float": FLOAT_CONVOLUTIONS,
            "onnxruntime": onnxruntime.__version__}


class _Reader:
    """Feeds calibration inputs to ONNX Runtime's calibrator (its CalibrationDataReader protocol)."""

    def __init__(self, feeds: list[dict[str, np.ndarray]]) -> None:
        self.feeds = iter(feeds)

    def get_next(self) -> dict[str, np.ndarray] | None:
        return next(self.feeds, None)

    def rewind(self) -> None:  # not needed by MinMax
        pass


def quantize(float_folder: str, folder: str, calibration: Calibration,
             parts: tuple[str, ...] = QUANTIZED_PARTS) -> None:
    """Write the int8 graphs of `parts` (the others copied as they are) from `float_folder` into `folder`."""
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static

    settings = quantization_settings()
    feeds = {ENCODER_FILE: [{"images": t.numpy()} for t in calibration.images],
             HEAD_FILE: [{"ltm_out": a.numpy(), "sta_out": b.numpy()} for a, b in calibration.head_inputs]}
    with _quiet_root_logger():  # the quantizer logs its advice and notes through the root logger
        for name in (ENCODER_FILE, HEAD_FILE):
            source, target = os.path.join(float_folder, name), os.path.join(folder, name)
            if name not in parts:
                for file in (name, name + ".data"):
                    shutil.copyfile(os.path.join(float_folder, file), os.path.join(folder, file))
                continue
            # The exported graphs have their BatchNorms folded into the convolutions already
            # (onnx_export.py), which is what ONNX Runtime's pre-processing would do.
            quantize_static(source, target, _Reader(feeds[name]), quant_format=QuantFormat.QDQ, per_channel=True,
                            reduce_range=settings["reduce_range"], activation_type=QuantType.QUInt8,
                            weight_type=QuantType.QInt8, calibrate_method=CalibrationMethod[CALIBRATE_METHOD],
                            nodes_to_exclude=_float_convolutions(source) if name == ENCODER_FILE else [])


def _float_convolutions(path: str) -> list[str]:
    """The names of the encoder's convolutions that FLOAT_CONVOLUTIONS keeps in float32."""
    import onnx
    convolutions = [n.name for n in onnx.load(path, load_external_data=False).graph.node if n.op_type == "Conv"]
    return [convolutions[0]] * ("first" in FLOAT_CONVOLUTIONS) + [convolutions[-1]] * ("last" in FLOAT_CONVOLUTIONS)


@contextlib.contextmanager
def _quiet_root_logger() -> Iterator[None]:
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)
    try:
        yield
    finally:
        root.setLevel(level)


def int8_files(parts: tuple[str, ...]) -> tuple[str, ...]:
    """The files of an int8 export: a quantized graph holds its weights; a float one keeps them beside it."""
    return tuple(f for name in (ENCODER_FILE, HEAD_FILE)
                 for f in ((name,) if name in parts else (name, name + ".data")))


def int8_key(float_key: str, calibration: Calibration, parts: tuple[str, ...]) -> str:
    """The key of an int8 export: the float export's, the calibration's, the quantized parts, the settings."""
    return hashlib.sha256(json.dumps({"float": float_key, "calibration": calibration.digest(), "parts": parts,
                                      "settings": quantization_settings()}, sort_keys=True).encode()).hexdigest()
