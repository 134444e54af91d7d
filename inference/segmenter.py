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
import dataclasses
import functools
import itertools
import logging
import os
from dataclasses import dataclass
from typing import Callable, ContextManager, Generator, Iterable, Iterator, Sized

import cv2
import numpy as np
import torch
import torch.nn.functional as F

from config import Config
from dataloaders.transforms import eval_preprocess
from inference.backends import build_backend
from inference.backends.quantization import CALIBRATION_FRAMES
from inference.checkpoint_settings import settings_for_checkpoint
from inference.options import InferenceOptions
from inference.progress import SegmentProgress
from inference.window import Step, WindowSchedule
from networks.lsta import LSTA, FrameCache
from networks.weights import load_lsta
from utils.errors import DataError
from utils.image_io import (
    DamagedVideoError,
    folder_frames,
    frame_count,
    read_image,
    shrink_frame,
    video_frame_sources,
)
from utils.ordered_map import ordered_map
from utils.spacing import evenly_spaced

log = logging.getLogger("lsta.inference")
READ_AHEAD = 8  # frames decoded and preprocessed ahead of the model by reader threads
AUTOCAST_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}


@dataclass
class SegmentedFrame:
    """One frame's result at its original size."""
    index: int
    mask: np.ndarray          # (h, w) uint8: 1 = object
    probability: np.ndarray   # (h, w) float32: the object's probability
    image: np.ndarray         # (h, w, 3) uint8 BGR: the frame as read
    finite: bool = True       # False: the model's logits held NaN or inf, so the mask means nothing
    name: str = ""            # what its results are named: an image file's name without extension, else 00000...


@dataclass(frozen=True)
class View:
    """One test-time view of the video: a scale of the frame size, possibly mirrored."""
    scale: float = 1.0
    flip: bool = False


def default_encode_batch(device: torch.device) -> int:
    """Frames per encoder call: 4 on GPUs; 1 on CPUs, where batching only costs time and memory."""
    return 4 if device.type == "cuda" else 1


def default_videos_in_flight(device: torch.device) -> int:
    """Videos segmented at once by segment_videos: 4 on GPUs, whose encoder batches they fill; 1 on CPUs."""
    return 4 if device.type == "cuda" else 1


class VideoSegmenter:
    """An LSTA model with the authors' inference schedule; `segment()` streams a video's results."""

    def __init__(self, model: LSTA, options: InferenceOptions = InferenceOptions(),
                 device: torch.device | str | None = None,
                 measure: Callable[[str], ContextManager] | None = None) -> None:
        self.device = torch.device(device) if device is not None else next(model.parameters()).device
        self.model = model.to(self.device).eval()
        self.window, self.max_size = options.window, options.max_size
        self.encode_batch = options.encode_batch or default_encode_batch(self.device)
        self.videos_in_flight = options.videos_in_flight or default_videos_in_flight(self.device)
        # Frames of several videos in one encoder call fill a GPU's batches. A CPU gains nothing by it
        # (larger batches take as long per frame) and its convolutions round differently by batch size,
        # so there each video is encoded alone: the same bytes as segmenting it by itself.
        self.batch_across_videos = self.device.type == "cuda"
        # Reader threads: a GPU outruns one CPU core's decoding and preprocessing several times over.
        self.prepare_workers = min(6, os.cpu_count() or 1) if self.device.type == "cuda" else 2
        self.views = [View(float(s), f) for s in options.scales for f in ((False, True) if options.flip else (False,))]
        self.autocast_dtype = AUTOCAST_DTYPES.get(options.precision)  # None: float32 (tf32 is a CUDA matmul setting)
        self.measure = measure or (lambda _: contextlib.nullcontext())
        self.compiled = bool(options.compile)
        self.backend = build_backend(self.model, options, self.device)  # who computes the encoder and the head
        if self.backend.needs_calibration and options.calibration:  # TEST_INT8_CALIBRATION: a folder of frames
            files = folder_frames(options.calibration)
            self.calibrate([read_image(files[i]) for i in evenly_spaced(len(files), CALIBRATION_FRAMES)])

    @property
    def encode(self) -> Callable[[torch.Tensor], torch.Tensor]:
        """The backend's encoder (a property: an int8 backend has it once calibrated)."""
        return self.backend.encode

    @property
    def step(self) -> Step:
        """One query frame's logits from cached frames, as the backend computes them."""
        return self.backend.step

    def calibrate(self, frames: list[np.ndarray]) -> None:
        """TEST_PRECISION int8: quantize on these BGR frames (shrunk to the first one's size), as they will be
        preprocessed; nothing for other precisions or when done already."""
        if not self.backend.needs_calibration:
            return
        height, width = frames[0].shape[:2]
        images = [as_bgr_frame(f, i) if f.shape[:2] == (height, width) else
                  cv2.resize(as_bgr_frame(f, i), (width, height), interpolation=cv2.INTER_AREA)
                  for i, f in enumerate(frames)]
        tensors = [eval_preprocess(image, self.max_size, f"calibration frame {i}")[None] for i, image in
                   enumerate(images)]
        log.info(f"TEST_PRECISION int8: calibrating on {len(tensors)} frames of {width}x{height}")
        self.backend.calibrate(tensors)

    @classmethod
    def from_config(cls, model: LSTA, cfg: Config, device: torch.device | str | None = None,
                    measure: Callable[[str], ContextManager] | None = None) -> "VideoSegmenter":
        """A segmenter with the config's window, size cap, batch and test-time augmentation."""
        return cls(model, InferenceOptions.from_config(cfg), device, measure)

    @classmethod
    def from_checkpoint(cls, path: str, cfg: Config | None = None, device: torch.device | str | None = None,
                        measure: Callable[[str], ContextManager] | None = None) -> "VideoSegmenter":
        """The model `path` records (every entry must load), segmenting as eval.py and demo.py do with it.

        Settings: `cfg` (default: the authors'), with the keys the checkpoint records and `cfg` does
        not give taken from its record (inference/checkpoint_settings.py), e.g. its window.
        """
        cfg, _ = settings_for_checkpoint(cfg, path)
        model, _ = load_lsta(path, cfg)
        device = device if device is not None else ("cuda" if str(cfg.DEVICE).startswith("cuda") else "cpu")
        return cls.from_config(model, cfg, device, measure)

    @torch.inference_mode()
    def warm_up(self, image: np.ndarray) -> None:
        """One untimed pass, so that timings exclude lazy initialisation and autotuning."""
        frame = self._prepare((0, image), "the video")
        if frame.error is not None:
            raise frame.error
        batch = self._to_device([frame] * self.encode_batch, self.views[0])  # the batch size a video's frames come in
        with self.precision():
            for _ in range(3 if self.compiled else 1):  # CUDA graphs are recorded at a function's 2nd or 3rd call
                cache = self.model.cache_frames(self.encode(batch)).split()[0]
                # A window of distinct tensors, as a video's: the compiler specialises on repeated inputs.
                window = [FrameCache(**{f.name: getattr(cache, f.name).clone() for f in dataclasses.fields(cache)})
                          for _ in range(max(self.window, 3))]
                self.step(window[0], window[1:-1], window[-1])

    def precision(self) -> ContextManager:
        """Autocast for TEST_PRECISION bf16/fp16, around each model call (never across a yield)."""
        dtype = self.autocast_dtype
        return torch.autocast(self.device.type, dtype=dtype) if dtype is not None else contextlib.nullcontext()

    def segment(self, frames: str | Iterable[np.ndarray | str], max_side: int | None = None,
                accept_partial: bool = False, name: str | None = None,
                progress: Callable[[SegmentProgress], None] | None = None) -> Iterator[SegmentedFrame]:
        """Results for every frame, in order, as soon as the schedule allows (frames 0..M-1 together).

        `frames`: a video file or a folder of frames (`max_side` shrinks large frames,
        `accept_partial` keeps what a damaged video decodes), or a list (any iterable) of frames:
        uint8 arrays of shape (H, W, 3) in BGR order, or image paths. Grayscale (H, W) or (H, W, 1)
        frames are repeated to three channels and BGRA (H, W, 4) frames lose their alpha; anything
        else is a ValueError naming the frame, its shape and dtype. All frames must have one size.
        `name` labels the video in error messages.

        Reader threads decode and preprocess frames ahead of the model. On a GPU the results of
        one encoder batch are copied back while the next batch runs, so they come one batch later.

        A frame whose logits are not finite (fp16 arithmetic overflowing, weights holding NaN) comes
        with `finite` False, and the log says so once per video.

        `progress(state)` is called with a SegmentProgress whenever a frame has been read, encoded
        or given; an exception it raises (a stop request) ends the segmentation there.
        """
        video = VideoInput(frames, name, max_side, accept_partial, progress)
        with contextlib.closing(self.segment_videos([video], in_flight=1)) as results:
            for _, frame in results:
                if frame is not None:
                    yield frame

    @torch.inference_mode()
    def segment_videos(self, videos: Iterable["VideoInput"], in_flight: int | None = None
                       ) -> Iterator[tuple["VideoInput", SegmentedFrame | None]]:
        """`segment` for several videos, `in_flight` of them at a time (default: the options'): each
        (video, frame) as it comes, in order within each video, and (video, None) once a video is done.

        On a GPU the encoder takes the frames of every video in flight whose frames have the same
        size in one call (full batches where a video alone would leave them short): each video keeps
        its own window, so its results are those it gets alone up to the encoder's rounding in
        another batch size. On a CPU each video is encoded alone: byte for byte its results alone.
        A video that fails (a damaged file, bad frames) stops them all, after
        the frames it decoded have their results.
        """
        in_flight = in_flight or self.videos_in_flight
        waiting, active = iter(videos), []
        with contextlib.ExitStack() as readers:  # every video's reader threads end with this generator
            while True:
                while len(active) < in_flight and (video := next(waiting, None)) is not None:
                    active.append(readers.enter_context(contextlib.closing(self._open(video))))
                if not active:
                    return
                taken = [(stream, stream.take(self.encode_batch)) for stream in active]
                launched = self._advance([(stream, frames) for stream, frames in taken if frames])
                for stream, _ in taken:
                    if stream in launched:
                        yield from stream.given(self._overlapped(stream, launched[stream]))
                    if stream.ended:
                        yield from stream.given(self._finish(stream))
                        stream.close()
                        if stream.damage is not None:
                            raise stream.damage
                        yield stream.video, None
                active = [stream for stream in active if not stream.ended]

    def _open(self, video: "VideoInput") -> "_VideoStream":
        """A video's stream: its frames read and preprocessed ahead by reader threads, its own windows."""
        frames = video.frames
        if isinstance(frames, np.ndarray):
            raise DataError(f"segment() takes a list of frames (or a video path), not one array of shape "
                            f"{frames.shape}: wrap a single frame as [frame]")
        if isinstance(frames, (bytes, bytearray)) or not isinstance(frames, (str, Iterable)):
            raise DataError(f"segment() takes a video path or a list of frames, not {type(frames).__name__}")
        from_path = isinstance(frames, str)
        name = video_label(video)
        source = video_frame_sources(frames, video.accept_partial) if from_path else frames
        prepare = functools.partial(self._prepare, name=name, max_side=video.max_side if from_path else None)
        reader = ordered_map(prepare, enumerate(source), self.prepare_workers, max(READ_AHEAD, 2 * self.encode_batch))
        # int8 on the first video's own first frames, once per segmenter
        prepared = self._calibrated(reader) if self.backend.needs_calibration else reader
        tracker = _Tracker(video.progress, SegmentProgress(self.window, _known_length(frames)))
        schedules = [WindowSchedule(self.model, self.window, self.step) for _ in self.views]
        return _VideoStream(video, prepared, reader, schedules, tracker, self.autocast_dtype == torch.float16)

    def _calibrated(self, prepared: Iterator["PreparedFrame"]) -> Iterator["PreparedFrame"]:
        """`prepared` again, after calibrating on its first CALIBRATION_FRAMES frames."""
        first = list(itertools.islice(prepared, CALIBRATION_FRAMES))
        usable = [f.image for f in first if f.error is None and f.image.shape == first[0].image.shape]
        if usable:
            self.calibrate(usable)
        return itertools.chain(first, prepared)

    def _prepare(self, numbered: tuple[int, np.ndarray | str], name: str,
                 max_side: int | None = None) -> "PreparedFrame":
        """Frame `numbered` = (index, array or image path) read, checked and preprocessed per scale (reader thread)."""
        index, item = numbered
        image = shrink_frame(read_image(item) if isinstance(item, str) else as_bgr_frame(item, index), max_side)
        label = os.path.splitext(os.path.basename(item))[0] if isinstance(item, str) else f"{index:05d}"
        try:
            tensors = {scale: eval_preprocess(image, self.max_size, f"frame {index} of {name}", scale)
                       for scale in dict.fromkeys(view.scale for view in self.views)}
        except DataError as err:  # raised in the frame's turn, after the size check
            return PreparedFrame(image, {}, err, label)
        if self.device.type == "cuda":  # page-locked, so that the copy to the GPU overlaps its work
            tensors = {scale: t.pin_memory() for scale, t in tensors.items()}
        return PreparedFrame(image, tensors, name=label)

    def _to_device(self, frames: list["PreparedFrame"], view: View) -> torch.Tensor:
        """`view`'s batch (B,3,H',W') of `frames` on the device."""
        batch = torch.stack([f.views[view.scale].to(self.device, non_blocking=True) for f in frames])
        return batch.flip(-1) if view.flip else batch

    def _advance(self, taken: list[tuple["_VideoStream", list["PreparedFrame"]]]) -> dict["_VideoStream",
                                                                                            "_LaunchedResults"]:
        """Encode the frames `taken` from each video (one encoder call per view and frame size), push them
        through each video's windows, and launch the results they complete."""
        done: dict[_VideoStream, list[list[tuple[int, torch.Tensor]]]] = {s: [[] for _ in self.views] for s, _ in taken}
        by_size: dict[tuple[int, ...], list[tuple[_VideoStream, list[PreparedFrame]]]] = {}
        for stream, frames in taken:  # the tensors' sizes, every scale's: one batch holds one size
            size = tuple(t.shape for t in frames[0].views.values())
            by_size.setdefault(size if self.batch_across_videos else (size, id(stream)), []).append((stream, frames))
        for group in by_size.values():
            for v, view in enumerate(self.views):
                batch = torch.cat([self._to_device(frames, view) for _, frames in group])
                with self.measure("encoder"), self.precision():
                    caches = iter(self.model.cache_frames(self.encode(batch)).split())
                with self.measure("head"), self.precision():
                    for stream, frames in group:
                        for cache in itertools.islice(caches, len(frames)):
                            done[stream][v] += stream.schedules[v].push(cache)
            for stream, frames in group:
                stream.tracker.add(encoded=len(frames))
        return {stream: self._launch_results(per_view, stream.images) for stream, per_view in done.items()}

    def _finish(self, stream: "_VideoStream") -> Iterator[SegmentedFrame]:
        """A video's last results: those its windows still owe, then those still being copied back."""
        with self.measure("head"), self.precision():
            done = [schedule.finish() for schedule in stream.schedules]
        yield from self._overlapped(stream, self._launch_results(done, stream.images))
        if stream.launched is not None:
            yield from stream.launched.collect()
            stream.launched = None

    def _overlapped(self, stream: "_VideoStream", launched: "_LaunchedResults") -> Iterator[SegmentedFrame]:
        """The video's results due now (on a GPU, `launched` waits one batch while the next one runs)."""
        if self.device.type != "cuda":
            yield from launched.collect()
            return
        if stream.launched is not None:
            yield from stream.launched.collect()
        stream.launched = launched

    def _launch_results(self, done: list[list[tuple[int, torch.Tensor]]],
                        images: dict[int, tuple[np.ndarray, str]]) -> "_LaunchedResults":
        """Masks and probabilities of the frames in `done`, computed and copied back without waiting for them."""
        results = []
        for per_view in zip(*done):  # every view predicts the same frames at the same time
            index = per_view[0][0]
            image, label = images.pop(index)
            with self.measure("post"):
                logits = [view_logits for _, view_logits in per_view]
                mask, probability = self._combine(logits, image.shape[:2])
                # Checked at the logits' size, on the device: read with the mask, no extra wait.
                finite = torch.stack([torch.isfinite(view_logits).all() for view_logits in logits]).all()
                # non_blocking: into page-locked memory, read only once `ready` has passed
                results.append((index, mask.to("cpu", non_blocking=True), probability.to("cpu", non_blocking=True),
                                finite.to("cpu", non_blocking=True), image, label))
        ready = None
        if self.device.type == "cuda" and results:
            ready = torch.cuda.Event()
            ready.record()
        return _LaunchedResults(results, ready)

    def _combine(self, logits: list[torch.Tensor], size: tuple[int, int]) -> tuple[torch.Tensor, torch.Tensor]:
        """The mask (uint8) and object probability (float32) at the frame's `size` from each view's logits."""
        full = [F.interpolate((l.flip(-1) if v.flip else l).float(), size=size, mode="bilinear", align_corners=True)
                for v, l in zip(self.views, logits)]
        if len(full) == 1:  # the authors' masks, exactly: the argmax of the resized logits
            mask = full[0].argmax(dim=1)[0]
            probability = torch.softmax(full[0], dim=1)[0, 1]
        else:
            probability = torch.stack([torch.softmax(l, dim=1)[0, 1] for l in full]).mean(0)
            mask = probability > 0.5
        return mask.to(torch.uint8), probability.float()


@dataclass
class VideoInput:
    """One video for `segment_videos`: its frames (a path, or frames / image paths) and how to read them."""
    frames: str | Iterable[np.ndarray | str]
    name: str | None = None               # labels the video in error messages (default: the path)
    max_side: int | None = None           # a file's or folder's frames shrunk to this long side
    accept_partial: bool = False          # keep what a damaged video decodes
    progress: Callable[[SegmentProgress], None] | None = None
    key: object = None                    # the caller's own label (a sequence), given back with each result


def video_label(video: VideoInput) -> str:
    """What error messages call a video: its name, else its path."""
    return video.name or (video.frames if isinstance(video.frames, str) else "the video")


class _VideoStream:
    """One video being segmented: its prepared frames, checked in turn, its windows and its frames waiting."""

    def __init__(self, video: VideoInput, prepared: Iterator["PreparedFrame"],
                 reader: Generator["PreparedFrame", None, None], schedules: list[WindowSchedule], tracker: "_Tracker",
                 fp16: bool) -> None:
        self.video, self.name, self.prepared, self.reader = video, video_label(video), prepared, reader
        self.schedules, self.tracker, self.fp16 = schedules, tracker, fp16
        self.images: dict[int, tuple[np.ndarray, str]] = {}  # frames waiting for their result: at most one window
        self.names: set[str] = set()
        self.shape: tuple[int, ...] | None = None
        self.read, self.ended, self.warned = 0, False, False
        self.damage: DamagedVideoError | None = None
        self.launched: _LaunchedResults | None = None  # on a GPU: the batch being copied back

    def take(self, count: int) -> list["PreparedFrame"]:
        """Up to `count` next frames, each checked; `ended` once the video has no more (a damaged file: `damage`)."""
        frames = []
        while len(frames) < count and not self.ended:
            try:
                frame = next(self.prepared)
            except StopIteration:
                self.ended = True
                break
            except DamagedVideoError as err:  # every frame that did decode still gets its result first
                self.ended, self.damage = True, err
                break
            index, self.read = self.read, self.read + 1
            self.shape = self.shape or frame.image.shape
            if frame.image.shape != self.shape:
                raise DataError(f"frame {index} of {self.name} is {frame.image.shape[1]}x{frame.image.shape[0]}, "
                                f"unlike the frames before it ({self.shape[1]}x{self.shape[0]}): all frames of a video "
                                f"must have one size")
            if frame.error is not None:
                raise frame.error
            if frame.name in self.names:
                raise DataError(f"two frames of {self.name} are named {frame.name!r}: their results would "
                                f"overwrite each other; give every frame its own name")
            self.names.add(frame.name)
            self.images[index] = (frame.image, frame.name)
            self.tracker.add(read=1)
            frames.append(frame)
        return frames

    def given(self, results: Iterator[SegmentedFrame]) -> Iterator[tuple[VideoInput, SegmentedFrame]]:
        """`results` as (video, frame), counted as done; a frame with non-finite logits is logged once per video."""
        for frame in results:
            self.tracker.add(done=1)
            if not frame.finite and not self.warned:
                cause = ("TEST_PRECISION fp16 overflows beyond ±65504 (bf16 keeps float32's range)" if self.fp16
                         else "the weights give non-finite outputs")
                log.warning(f"{self.name}: frame {frame.index}'s logits are not finite (NaN or inf), so its mask means "
                            f"nothing: {cause}; later such frames of this video are marked (finite False) but not "
                            f"logged")
                self.warned = True
            yield self.video, frame

    def close(self) -> None:
        """Stop the video's reader threads."""
        self.reader.close()


class _Tracker:
    """Counts a video's frames into its SegmentProgress and tells the caller's callback of each change."""

    def __init__(self, callback: Callable[[SegmentProgress], None] | None, state: SegmentProgress) -> None:
        self.callback, self.state = callback, state

    def add(self, read: int = 0, encoded: int = 0, done: int = 0) -> None:
        self.state.read += read
        self.state.encoded += encoded
        self.state.done += done
        if self.callback is not None:
            self.callback(self.state)


def _known_length(frames: object) -> int | None:
    """How many frames a video path or a sized sequence holds; None when that cannot be told cheaply."""
    if isinstance(frames, str):
        try:
            return frame_count(frames)
        except (OSError, ValueError):
            return None  # the reading itself reports what is wrong with the path
    return len(frames) if isinstance(frames, Sized) and not isinstance(frames, np.ndarray) else None


@dataclass
class PreparedFrame:
    """A frame as read (BGR) and its preprocessed tensor for each view scale, or why it cannot be preprocessed."""
    image: np.ndarray
    views: dict[float, torch.Tensor]
    error: DataError | None = None
    name: str = ""


@dataclass
class _LaunchedResults:
    """Results whose copies back from the device may still be running; `collect()` waits for them."""
    results: list[tuple[int, torch.Tensor, torch.Tensor, torch.Tensor, np.ndarray, str]]
    ready: "torch.cuda.Event | None"

    def collect(self) -> Iterator[SegmentedFrame]:
        """The results, once their copies have arrived."""
        if self.ready is not None:
            self.ready.synchronize()
        for index, mask, probability, finite, image, label in self.results:
            yield SegmentedFrame(index, mask.numpy(), probability.numpy(), image, bool(finite), label)


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
