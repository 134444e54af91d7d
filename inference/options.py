"""InferenceOptions: how a video is segmented, the inference settings of a Config as plain values."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence


@dataclass(frozen=True)
class InferenceOptions:
    """How a video is segmented: the window, the size cap, frames per encoder call, test-time views, who computes."""
    window: int = 11                       # MODEL_MAX_MEM
    max_size: int = 1040                   # TEST_MAX_SIZE
    encode_batch: int = 0                  # TEST_ENCODE_BATCH (0: 4 on GPU, 1 on CPU)
    flip: bool = False                     # TEST_FLIP
    scales: Sequence[float] = (1.0,)       # TEST_MULTISCALE
    precision: str = "float32"             # TEST_PRECISION: float32 | tf32 | bf16 | fp16 (autocast) | int8
    backend: str = "torch"                 # TEST_BACKEND: a name of inference.backends.BACKENDS, or auto
    onnx_cache: str = "pretrained/onnx"    # DIR_ONNX_CACHE: where onnxruntime's exports are kept
    compile: bool | str = False            # TEST_COMPILE: torch.compile encoder and step (torch); "cudagraphs" too
    channels_last: bool = False            # TEST_CHANNELS_LAST: encoder and head in channels-last layout (torch)
    calibration: str = ""                  # TEST_INT8_CALIBRATION: a folder of frames ("": the video's own first)
    videos_in_flight: int = 0              # TEST_VIDEOS_IN_FLIGHT: videos segmented at once (0: 4 on GPU, 1 on CPU)

    def torch_only(self) -> tuple[str, ...]:
        """The keys of the options set here that only the torch backend has."""
        return tuple(key for key, on in (("TEST_COMPILE", self.compile), ("TEST_CHANNELS_LAST", self.channels_last))
                     if on)

    @classmethod
    def from_config(cls, cfg: Any) -> "InferenceOptions":
        """The options a Config describes."""
        return cls(cfg.MODEL_MAX_MEM, cfg.TEST_MAX_SIZE, cfg.TEST_ENCODE_BATCH, cfg.TEST_FLIP,
                   tuple(cfg.TEST_MULTISCALE), cfg.TEST_PRECISION, cfg.TEST_BACKEND, cfg.DIR_ONNX_CACHE,
                   cfg.TEST_COMPILE, cfg.TEST_CHANNELS_LAST, cfg.TEST_INT8_CALIBRATION, cfg.TEST_VIDEOS_IN_FLIGHT)
