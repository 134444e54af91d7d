"""PyTorch runs the whole model: any device and precision, optionally compiled or in channels-last layout."""
from __future__ import annotations

import functools
from typing import Callable, Sequence

import torch

from inference.backends.base import Backend
from inference.options import InferenceOptions
from networks.lsta import LSTA, FrameCache
from utils.compiled import CompiledOrEager
from utils.errors import SettingError
from utils.fold_batchnorm import fold_batchnorm


class TorchBackend(Backend):
    """The model's own modules: the encoder with its BatchNorms folded, the step as LSTA computes it."""
    name = "torch"

    def __init__(self, model: LSTA, options: InferenceOptions, device: torch.device) -> None:
        super().__init__(model, options, device)
        if options.channels_last:  # the convolutions follow their input's layout
            # Weights too: a convolution given them in the other layout reorders them at every call.
            model.to(memory_format=torch.channels_last)
        # The encoder's BatchNorms folded into its convolutions (ONNX Runtime does the same to its
        # graph): a snapshot of the weights, like the onnxruntime export.
        encode: Callable[[torch.Tensor], torch.Tensor] = fold_batchnorm(model.feature_extractor)
        self._head = _channels_last(model.head) if options.channels_last else model.head
        step: Callable[..., torch.Tensor] = functools.partial(model.segment_cached, head=self._head)
        if options.compile:
            # The whole step, not only its refine head: on a GPU a frame's ~130 small LTM and STA
            # operations cost more in launches than in arithmetic, and Inductor fuses them.
            graphs = options.compile == "cudagraphs"
            if graphs and device.type != "cuda":
                raise SettingError(f"TEST_COMPILE cudagraphs replays CUDA graphs: it needs a GPU, not {device}; "
                                   f"use TEST_COMPILE True")
            encode = CompiledOrEager(encode, "encoder", graphs)
            step = CompiledOrEager(step, "inference step (LTM, STA, refine head)", graphs)
        self._encode = _channels_last(encode) if options.channels_last else encode
        self._step = step

    @classmethod
    def refusal(cls, device: torch.device, precision: str, torch_only: Sequence[str]) -> str | None:
        if precision == "int8":
            return "TEST_PRECISION int8 runs on TEST_BACKEND onnxruntime (or auto), on the CPU"
        return None

    def encode(self, images: torch.Tensor) -> torch.Tensor:
        return self._encode(images)

    def head(self, ltm_out: torch.Tensor, sta_out: torch.Tensor) -> torch.Tensor:
        return self._head(ltm_out, sta_out)

    def step(self, query: FrameCache, long_memory: list[FrameCache], short_memory: FrameCache) -> torch.Tensor:
        return self._step(query, long_memory, short_memory)


def _channels_last(part: Callable[..., torch.Tensor]) -> Callable[..., torch.Tensor]:
    """`part` (the encoder or the head) on channels-last inputs; its output in the usual layout."""
    def run(*tensors: torch.Tensor) -> torch.Tensor:
        return part(*(t.contiguous(memory_format=torch.channels_last) for t in tensors)).contiguous()
    return run
