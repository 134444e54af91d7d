"""VideoSegmenter: masks and foreground probabilities for a video's frames, streamed in order.

    segmenter = VideoSegmenter.from_checkpoint("best_LSTA.pth")
    for frame in segmenter.segment("clip.mp4"):          # or a folder, or frames / image paths
        frame.mask, frame.probability, frame.image       # (h, w) uint8, (h, w) float32, BGR

Every benchmark, `eval.py --video` and your own code use this one engine: the authors'
preprocessing and window schedule, each frame encoded once, memory flat in the video's length.
Test-time augmentation (TEST_FLIP, TEST_MULTISCALE) runs one stream per view, each with its own
memory window, and averages the views' foreground probabilities at the original size.
"""
from __future__ import annotations

import contextlib
import importlib.util
import logging
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Callable, ContextManager, Iterable, Iterator, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from config import Config
from dataloaders.transforms import eval_preprocess
from inference.onnx_backend import OnnxModel
from inference.window import Head, WindowSchedule
from networks.lsta import LSTA
from networks.weights import load_lsta
from utils.compiled import CompiledOrEager
from utils.errors import DataError, SettingError
from utils.fold_batchnorm import fold_batchnorm
from utils.image_io import DamagedVideoError, iter_video_frames, read_image

log = logging.getLogger("lsta.inference")
READ_AHEAD = 8  # frames decoded ahead of the model by reader threads
AUTOCAST_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}


@dataclass
class SegmentedFrame:
    """One frame's result at its original size."""
    index: int
    mask: np.ndarray          # (h, w) uint8: 1 = object
    probability: np.ndarray   # (h, w) float32: the object's probability
    image: np.ndarray         # (h, w, 3) uint8 BGR: the frame as read


@dataclass(frozen=True)
class View:
    """One test-time view of the video: a scale of the frame size, possibly mirrored."""
    scale: float = 1.0
    flip: bool = False


def default_encode_batch(device: torch.device) -> int:
    """Frames per encoder call: 4 on GPUs; 1 on CPUs, where batching only costs time and memory."""
    return 4 if device.type == "cuda" else 1


@dataclass(frozen=True)
class InferenceOptions:
    """How a video is segmented: the window, the size cap, frames per encoder call, test-time views."""
    window: int = 11                       # MODEL_MAX_MEM
    max_size: int = 1040                   # TEST_MAX_SIZE
    encode_batch: int = 0                  # TEST_ENCODE_BATCH (0: 4 on GPU, 1 on CPU)
    flip: bool = False                     # TEST_FLIP
    scales: Sequence[float] = (1.0,)       # TEST_MULTISCALE
    precision: str = "float32"             # TEST_PRECISION: float32 | tf32 | bf16 | fp16 (autocast)
    backend: str = "torch"                 # TEST_BACKEND: torch | onnxruntime | auto (resolve_backend)
    onnx_cache: str = "pretrained/onnx"    # DIR_ONNX_CACHE: where onnxruntime's encoder exports are kept
    compile: bool = False                  # TEST_COMPILE: torch.compile the encoder and head (torch backend)
    channels_last: bool = False            # TEST_CHANNELS_LAST: encoder and head in channels-last layout (torch)

    def torch_only(self) -> tuple[str, ...]:
        """The keys of the options set here that only the torch backend has."""
        return tuple(key for key, on in (("TEST_COMPILE", self.compile), ("TEST_CHANNELS_LAST", self.channels_last))
                     if on)

    @classmethod
    def from_config(cls, cfg: Config) -> "InferenceOptions":
        """The options a Config describes."""
        return cls(cfg.MODEL_MAX_MEM, cfg.TEST_MAX_SIZE, cfg.TEST_ENCODE_BATCH, cfg.TEST_FLIP,
                   tuple(cfg.TEST_MULTISCALE), cfg.TEST_PRECISION, cfg.TEST_BACKEND, cfg.DIR_ONNX_CACHE,
                   cfg.TEST_COMPILE, cfg.TEST_CHANNELS_LAST)


def resolve_backend(backend: str, device: torch.device, precision: str, torch_only: Sequence[str] = ()) -> str:
    """torch or onnxruntime for TEST_BACKEND on `device` at `precision`; an error for a combination that cannot run.

    `auto` is onnxruntime on a CPU in float32 (tools/bench_model.py: 0.59x-0.65x PyTorch's time for the
    encoder there) when the package is installed and no PyTorch-only option (`torch_only`: the
    keys set, TEST_COMPILE, TEST_CHANNELS_LAST) is on, and torch everywhere else.
    """
    if backend == "auto":
        usable = (device.type == "cpu" and precision in ("float32", "tf32") and not torch_only
                  and bool(importlib.util.find_spec("onnxruntime")))
        return "onnxruntime" if usable else "torch"
    if backend == "onnxruntime" and torch_only:
        raise SettingError(f"{torch_only[0]} is a PyTorch option: use TEST_BACKEND torch (or auto) with it")
    if backend == "onnxruntime" and device.type != "cpu":
        raise SettingError(f"TEST_BACKEND onnxruntime runs on the CPU, not on {device}: use torch (or auto) there")
    if backend == "onnxruntime" and precision in AUTOCAST_DTYPES:
        raise SettingError(f"TEST_BACKEND onnxruntime runs in float32: TEST_PRECISION {precision} needs torch")
    if backend not in ("torch", "onnxruntime"):
        raise SettingError(f"TEST_BACKEND {backend!r}: choose auto, torch or onnxruntime")
    return backend


class VideoSegmenter:
    """An LSTA model with the authors' inference schedule; `segment()` streams a video's results."""

    def __init__(self, model: LSTA, options: InferenceOptions = InferenceOptions(),
                 device: torch.device | str | None = None,
                 measure: Callable[[str], ContextManager] | None = None) -> None:
        self.device = torch.device(device) if device is not None else next(model.parameters()).device
        self.model = model.to(self.device).eval()
        self.window, self.max_size = options.window, options.max_size
        self.encode_batch = options.encode_batch or default_encode_batch(self.device)
        self.views = [View(float(s), f) for s in options.scales for f in ((False, True) if options.flip else (False,))]
        self.autocast_dtype = AUTOCAST_DTYPES.get(options.precision)  # None: float32 (tf32 is a CUDA matmul setting)
        self.measure = measure or (lambda _: contextlib.nullcontext())
        self.backend = resolve_backend(options.backend, self.device, options.precision, options.torch_only())
        if options.channels_last:  # the convolutions follow their input's layout
            # Weights too: a convolution given them in the other layout reorders them at every call.
            self.model.to(memory_format=torch.channels_last)
        self.encode: Callable[[torch.Tensor], torch.Tensor] = self.model.encode
        self.head: Head | None = None  # the model's own
        if self.backend == "torch":
            # The encoder's BatchNorms folded into its convolutions (ONNX Runtime does the same to
            # its graph): a snapshot of the weights, like the onnxruntime export.
            self.encode = fold_batchnorm(self.model.feature_extractor)
        if options.compile:  # both convolution stacks; LTM and STA are a few small operations between them
            self.encode = CompiledOrEager(self.encode, "encoder")
            self.head = CompiledOrEager(self.model.head, "refine head")
        if options.channels_last:
            self.encode = _channels_last(self.encode)
            self.head = _channels_last(self.head or self.model.head)
        if self.backend == "onnxruntime":
            try:
                onnx = OnnxModel.for_model(self.model, options.onnx_cache)
                self.encode, self.head = onnx.encode, onnx.head
            except (OSError, RuntimeError) as err:
                if options.backend != "auto":
                    raise
                # `auto` only ever speeds things up: whatever stops the export (a read-only cache
                # folder, an exporter failure) leaves PyTorch doing the work, as it can.
                log.warning(f"TEST_BACKEND auto: onnxruntime unavailable ({str(err).splitlines()[0]}); using torch")
                self.backend = "torch"

    @classmethod
    def from_config(cls, model: LSTA, cfg: Config, device: torch.device | str | None = None,
                    measure: Callable[[str], ContextManager] | None = None) -> "VideoSegmenter":
        """A segmenter with the config's window, size cap, batch and test-time augmentation."""
        return cls(model, InferenceOptions.from_config(cfg), device, measure)

    @classmethod
    def from_checkpoint(cls, path: str, cfg: Config | None = None, device: torch.device | str | None = None,
                        measure: Callable[[str], ContextManager] | None = None) -> "VideoSegmenter":
        """The model `path` records (every entry must load); inference settings from `cfg` (default: the authors')."""
        cfg = cfg or Config()
        model, _ = load_lsta(path, cfg)
        device = device if device is not None else ("cuda" if str(cfg.DEVICE).startswith("cuda") else "cpu")
        return cls.from_config(model, cfg, device, measure)

    @torch.inference_mode()
    def warm_up(self, image: np.ndarray) -> None:
        """One untimed pass, so that timings exclude lazy initialisation and autotuning."""
        batch = self._views_of([image])[0]
        with self.precision():
            caches = self.model.cache_frames(self.encode(batch)).split()
            self.model.segment_cached(caches[0], caches[:1] * 2, caches[0], self.head)

    def precision(self) -> ContextManager:
        """Autocast for TEST_PRECISION bf16/fp16, around each model call (never across a yield)."""
        dtype = self.autocast_dtype
        return torch.autocast(self.device.type, dtype=dtype) if dtype is not None else contextlib.nullcontext()

    @torch.inference_mode()
    def segment(self, frames: str | Iterable[np.ndarray | str], max_side: int | None = None,
                accept_partial: bool = False, name: str | None = None) -> Iterator[SegmentedFrame]:
        """Results for every frame, in order, as soon as the schedule allows (frames 0..M-1 together).

        `frames`: a video file or a folder of frames (`max_side` shrinks large frames,
        `accept_partial` keeps what a damaged video decodes), or a list (any iterable) of frames:
        uint8 arrays of shape (H, W, 3) in BGR order, or image paths. Grayscale (H, W) or (H, W, 1)
        frames are repeated to three channels and BGRA (H, W, 4) frames lose their alpha; anything
        else is a ValueError naming the frame, its shape and dtype. All frames must have one size.
        `name` labels the video in error messages.
        """
        if isinstance(frames, np.ndarray):
            raise DataError(f"segment() takes a list of frames (or a video path), not one array of shape "
                            f"{frames.shape}: wrap a single frame as [frame]")
        if isinstance(frames, (bytes, bytearray)) or not isinstance(frames, (str, Iterable)):
            raise DataError(f"segment() takes a video path or a list of frames, not {type(frames).__name__}")
        name = name or (frames if isinstance(frames, str) else "the video")
        source = iter_video_frames(frames, max_side, accept_partial) if isinstance(frames, str) else _read(frames)
        schedules = [WindowSchedule(self.model, self.window, self.head) for _ in self.views]
        images: dict[int, np.ndarray] = {}  # frames waiting for their result: at most one window
        pending: list[np.ndarray] = []
        shape, first, damage = None, 0, None
        try:
            for index, image in enumerate(source):
                shape = shape or image.shape
                if image.shape != shape:
                    raise DataError(f"frame {index} of {name} is {image.shape[1]}x{image.shape[0]}, unlike the frames "
                                     f"before it ({shape[1]}x{shape[0]}): all frames of a video must have one size")
                images[index] = image
                first = index if not pending else first
                pending.append(image)
                if len(pending) == self.encode_batch:
                    yield from self._advance(pending, first, schedules, images, name)
                    pending = []
        except DamagedVideoError as err:  # every frame that did decode still gets its result first
            damage = err
        if pending:
            yield from self._advance(pending, first, schedules, images, name)
        with self.measure("head"), self.precision():
            done = [schedule.finish() for schedule in schedules]
        yield from self._collect(done, images)
        if damage is not None:
            raise damage

    def _advance(self, frames: list[np.ndarray], first: int, schedules: list[WindowSchedule],
                 images: dict[int, np.ndarray], name: str) -> Iterator[SegmentedFrame]:
        inputs = self._views_of(frames, first, name)
        done: list[list[tuple[int, torch.Tensor]]] = [[] for _ in self.views]
        for v, (batch, schedule) in enumerate(zip(inputs, schedules)):
            with self.measure("encoder"), self.precision():
                caches = self.model.cache_frames(self.encode(batch)).split()
            with self.measure("head"), self.precision():
                for cache in caches:
                    done[v] += schedule.push(cache)
        yield from self._collect(done, images)

    def _views_of(self, frames: list[np.ndarray], first: int = 0, name: str = "the video") -> list[torch.Tensor]:
        """Each view's preprocessed batch (B,3,H',W') on the device."""
        batches = []
        for view in self.views:
            tensors = [eval_preprocess(f, self.max_size, f"frame {first + i} of {name}", view.scale)
                       for i, f in enumerate(frames)]
            batch = torch.stack(tensors)
            if self.device.type == "cuda":  # page-locked, so that the copy overlaps the GPU's work
                batch = batch.pin_memory()
            batch = batch.to(self.device, non_blocking=True)
            batches.append(batch.flip(-1) if view.flip else batch)
        return batches

    def _collect(self, done: list[list[tuple[int, torch.Tensor]]],
                 images: dict[int, np.ndarray]) -> Iterator[SegmentedFrame]:
        for per_view in zip(*done):  # every view predicts the same frames at the same time
            index = per_view[0][0]
            with self.measure("post"):
                result = self._combine(index, [logits for _, logits in per_view], images.pop(index))
            yield result

    def _combine(self, index: int, logits: list[torch.Tensor], image: np.ndarray) -> SegmentedFrame:
        size = image.shape[:2]
        full = [F.interpolate((l.flip(-1) if v.flip else l).float(), size=size, mode="bilinear", align_corners=True)
                for v, l in zip(self.views, logits)]
        if len(full) == 1:  # the authors' masks, exactly: the argmax of the resized logits
            mask = full[0].argmax(dim=1)[0]
            probability = torch.softmax(full[0], dim=1)[0, 1]
        else:
            probability = torch.stack([torch.softmax(l, dim=1)[0, 1] for l in full]).mean(0)
            mask = probability > 0.5
        return SegmentedFrame(index, mask.to(torch.uint8).cpu().numpy(), probability.float().cpu().numpy(), image)


def _channels_last(part: Callable[..., torch.Tensor]) -> Callable[..., torch.Tensor]:
    """`part` (the encoder or the head) on channels-last inputs; its output in the usual layout."""
    def run(*tensors: torch.Tensor) -> torch.Tensor:
        return part(*(t.contiguous(memory_format=torch.channels_last) for t in tensors)).contiguous()
    return run


def as_bgr_frame(frame: object, index: int) -> np.ndarray:
    """A frame given in memory as the (H, W, 3) uint8 BGR array the model reads; one error for anything else."""
    if not isinstance(frame, np.ndarray):
        raise DataError(f"frame {index} is a {type(frame).__name__}, not an image: give uint8 arrays of shape "
                        f"(H, W, 3) in BGR order, or image paths")
    shape, dtype = frame.shape, frame.dtype
    if dtype != np.uint8:
        raise DataError(f"frame {index} has shape {shape} and dtype {dtype}: frames must be uint8 (0..255) BGR; "
                        f"convert float [0, 1] frames with (frame * 255).round().astype(np.uint8)")
    if frame.ndim == 2 or (frame.ndim == 3 and shape[2] == 1):
        return np.ascontiguousarray(np.repeat(frame.reshape(shape[0], shape[1], 1), 3, axis=2))  # grayscale
    if frame.ndim == 3 and shape[2] == 4:
        return np.ascontiguousarray(frame[:, :, :3])  # BGRA: alpha dropped
    if frame.ndim == 3 and shape[2] == 3:
        return frame
    raise DataError(f"frame {index} has shape {shape} and dtype {dtype}: frames must be (H, W, 3) BGR, "
                    f"(H, W) grayscale or (H, W, 4) BGRA")


def _read(frames: Iterable[np.ndarray | str]) -> Iterator[np.ndarray]:
    """Arrays checked and converted (as_bgr_frame); image paths decoded by reader threads, READ_AHEAD frames ahead."""
    items = iter(frames)
    with ThreadPoolExecutor(2) as pool:
        queue: list = []
        for index, item in enumerate(items):
            queue.append(pool.submit(read_image, item) if isinstance(item, str) else _finished(as_bgr_frame(item, index)))
            if len(queue) > READ_AHEAD:
                yield queue.pop(0).result()
        for future in queue:
            yield future.result()


def _finished(value: np.ndarray) -> Future:
    """A frame given as an array, as a future that is already done."""
    future: Future = Future()
    future.set_result(value)
    return future
