"""The interface every inference backend offers: what it needs, `encode`, `head` and the inference step."""
from __future__ import annotations

from typing import ClassVar, Sequence

import torch

from inference.options import InferenceOptions
from networks.lsta import LSTA, FrameCache


class Backend:
    """Who computes a frame's encoder and refine head; LTM, STA and the window stay LSTA's own.

    A backend is one file under inference/backends/ and one line of `BACKENDS` there. It says what
    it needs (`refusal`) and whether `TEST_BACKEND auto` should pick it (`preferred`); once built
    for a model it offers `encode(images) -> features` and `head(ltm_out, sta_out) -> logits`, and
    `step`, one query frame's logits from cached frames (LSTA.segment_cached with its head).
    """
    name: ClassVar[str]

    def __init__(self, model: LSTA, options: InferenceOptions, device: torch.device) -> None:
        self.model, self.options, self.device = model, options, device

    @classmethod
    def refusal(cls, device: torch.device, precision: str, torch_only: Sequence[str]) -> str | None:
        """Why it cannot run on `device` at `precision` with the PyTorch-only options `torch_only` on; else None."""
        return None

    @classmethod
    def preferred(cls, device: torch.device, precision: str, torch_only: Sequence[str]) -> bool:
        """Whether `TEST_BACKEND auto` picks this backend here (the first that says so, in BACKENDS' order)."""
        return False

    @property
    def needs_calibration(self) -> bool:
        """Whether `calibrate` must run before the first frame (TEST_PRECISION int8)."""
        return False

    def calibrate(self, images: list[torch.Tensor]) -> None:
        """Measure what quantization needs on these preprocessed frames (1,3,H,W), of one size."""

    def encode(self, images: torch.Tensor) -> torch.Tensor:
        """Normalised BGR images (B,3,H,W) → stride-4 features (B,C,h,w), as LSTA.encode."""
        raise NotImplementedError

    def head(self, ltm_out: torch.Tensor, sta_out: torch.Tensor) -> torch.Tensor:
        """LTM (B,32,h,w) and STA (B,16,h,w) outputs → logits (B,2,h,w), as LSTA.head."""
        raise NotImplementedError

    def step(self, query: FrameCache, long_memory: list[FrameCache], short_memory: FrameCache) -> torch.Tensor:
        """One query frame's logits from cached frames (inference.window.Step)."""
        return self.model.segment_cached(query, long_memory, short_memory, self.head)
