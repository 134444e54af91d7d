"""The one image reader and mask writer of the project: clear errors that name the file."""
from __future__ import annotations

import contextlib
import io
import os
import sys
import tempfile
import threading
from typing import Callable, Iterator

import cv2
import numpy as np
from PIL import Image

from utils.errors import DataError, MissingFileError
from utils.files import atomic_write
from utils.names import natural_key

# ImageNet statistics in R, G, B order; the released weights apply them to B, G, R planes (docs/quirks.md).
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def davis_palette() -> list[int]:
    """The DAVIS palette (PASCAL VOC colour map), 256 RGB entries flattened."""
    palette = []
    for index in range(256):
        r = g = b = 0
        c = index
        for bit in range(8):
            r |= ((c >> 0) & 1) << (7 - bit)
            g |= ((c >> 1) & 1) << (7 - bit)
            b |= ((c >> 2) & 1) << (7 - bit)
            c >>= 3
        palette += [r, g, b]
    return palette


_PALETTE = davis_palette()


class DamagedVideoError(DataError):
    """A video file that decodes fewer frames than its container declares."""


def use_one_opencv_thread() -> None:
    """Run OpenCV on one thread in this process: its resizes then give the same bits on any machine."""
    # Multi-threaded cv2.resize differs by ~1e-6 from single-threaded (row stripes); training
    # samples must not depend on whether they are made in the main process or in a worker.
    if cv2.getNumThreads() != 1:
        cv2.setNumThreads(1)


def read_image(path: str) -> np.ndarray:
    """A frame as OpenCV reads it: (H,W,3) uint8 in **BGR** order (the model is trained on BGR).

    A file whose compressed data is damaged is an error, also where OpenCV decodes it with only
    libjpeg's "Corrupt JPEG data" warning on stderr and garbled blocks in the picture.
    """
    if not os.path.isfile(path):
        raise MissingFileError(f"image not found: {path}")
    if os.path.splitext(path)[1].lower() == ".png":
        _check_png(path)
    with _stderr_captured() as captured:
        image = cv2.imread(path, cv2.IMREAD_COLOR)
    warning = next((line for line in captured() if "JPEG" in line or "jpeg" in line), None)
    if image is None:
        raise DataError(f"unreadable or corrupt image: {path}")
    if warning:
        raise DataError(f"corrupt image ({warning.strip()}): {path}")
    return image


def _check_png(path: str) -> None:
    # libpng reports a damaged chunk only as a warning; every chunk's CRC tells.
    try:
        with Image.open(path) as img:
            img.verify()
    except (OSError, SyntaxError, ValueError) as err:
        raise DataError(f"corrupt image ({err}): {path}") from None


@contextlib.contextmanager
def _stderr_captured() -> Iterator[Callable[[], list[str]]]:
    """Collect what C libraries write to file descriptor 2 inside the block (libjpeg's warnings).

    One thread at a time: the descriptor is the process's, and two swaps must not interleave.
    """
    with _STDERR_LOCK:
        with _fd2_redirected() as lines:
            yield lambda: lines


_STDERR_LOCK = threading.Lock()


@contextlib.contextmanager
def _fd2_redirected() -> Iterator[list[str]]:
    sys.stderr.flush()
    saved = os.dup(2)
    lines: list[str] = []
    with tempfile.TemporaryFile() as sink:
        os.dup2(sink.fileno(), 2)
        try:
            yield lines
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            sink.seek(0)
            lines.extend(sink.read().decode(errors="replace").splitlines())


def image_size(path: str) -> tuple[int, int]:
    """(width, height) from the file's header only; ValueError naming the file when it has none."""
    try:
        with Image.open(path) as img:
            return img.size
    except FileNotFoundError:
        raise
    except (OSError, SyntaxError, ValueError) as err:
        raise DataError(f"unreadable image header ({err}): {path}") from None


def check_same_size(image: str, mask: str) -> None:
    """Raise ValueError when a mask's size (from its header) differs from its frame's, or a header is unreadable."""
    (w, h), (mw, mh) = image_size(image), image_size(mask)
    if (w, h) != (mw, mh):
        raise DataError(f"mask {mask} is {mw}x{mh} but its frame {image} is {w}x{h}")


def read_mask(path: str) -> np.ndarray:
    """A mask as (H,W) uint8: palette indices for palette PNGs, grey values otherwise.

    An image whose colour is black everywhere but whose alpha channel varies (an alpha-only mask,
    as image editors export them) is read by its alpha.
    """
    if not os.path.isfile(path):
        raise MissingFileError(f"mask not found: {path}")
    try:
        with Image.open(path) as img:
            img.load()
            if img.mode in ("P", "L"):
                mask = np.array(img, dtype=np.uint8)
            elif img.mode in ("LA", "RGBA", "PA") or (img.mode == "RGB" and "transparency" in img.info):
                rgba = img.convert("RGBA")
                colour, alpha = np.array(rgba.convert("L"), dtype=np.uint8), np.array(rgba)[:, :, 3]
                mask = alpha if not colour.any() and alpha.min() != alpha.max() else colour
            elif img.mode.startswith("I"):  # 16-bit grey: keep the object non-zero
                values = np.array(img)
                mask = (values > 0).astype(np.uint8) * 255 if values.max() > 255 else values.astype(np.uint8)
            else:
                mask = np.array(img.convert("L"), dtype=np.uint8)
    except (OSError, SyntaxError) as err:
        raise DataError(f"unreadable or corrupt mask: {path} ({err})") from None
    return mask


def mask_encoding(mask: np.ndarray) -> str:
    """How a ground-truth mask stores its object: `empty`, `0/1`, `binary` (0 and one other value) or `soft`."""
    values = np.unique(mask)
    if values.size == 1 and values[0] == 0:
        return "empty"
    if values.size > 2 or (values.size == 2 and values[0] != 0):
        return "soft"
    return "0/1" if values[-1] == 1 else "binary"


def read_binary_mask(path: str) -> np.ndarray:
    """A mask as (H,W) bool: any nonzero index or grey value is foreground (the DAVIS toolkit's rule)."""
    return read_mask(path) > 0


def write_palette_png(path: str, mask: np.ndarray) -> None:
    """Write an index map as a DAVIS palette PNG (index 1 = object), atomically."""
    img = Image.fromarray(np.asarray(mask, dtype=np.uint8), mode="P")
    img.putpalette(_PALETTE)
    buffer = io.BytesIO()
    img.save(buffer, format="PNG")
    atomic_write(path, buffer.getbuffer())


def write_grey_png(path: str, image: np.ndarray) -> None:
    """Write a uint8 grey image (a probability map) as PNG, atomically."""
    buffer = io.BytesIO()
    Image.fromarray(np.asarray(image, dtype=np.uint8), mode="L").save(buffer, format="PNG")
    atomic_write(path, buffer.getbuffer())


def write_image(path: str, image: np.ndarray, quality: int = 95) -> None:
    """Write a BGR uint8 image (JPEG or PNG by extension), atomically."""
    ext = os.path.splitext(path)[1].lower()
    params = ([cv2.IMWRITE_JPEG_QUALITY, quality, cv2.IMWRITE_JPEG_SAMPLING_FACTOR, cv2.IMWRITE_JPEG_SAMPLING_FACTOR_444]
              if ext in (".jpg", ".jpeg") else [])
    ok, encoded = cv2.imencode(ext, image, params)
    if not ok:
        raise OSError(f"could not encode image: {path}")
    atomic_write(path, encoded.tobytes())


IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".webp")


def iter_video_frames(path: str, max_side: int | None = None, accept_partial: bool = False) -> Iterator[np.ndarray]:
    """BGR frames of a video file (anything FFmpeg decodes) or a folder of images (in natural order).

    With `max_side`, frames whose longer side exceeds it are shrunk (area interpolation). A video
    file that decodes fewer frames than its container declares raises after its last good frame,
    unless `accept_partial`.
    """
    for item in video_frame_sources(path, accept_partial):
        yield shrink_frame(read_image(item) if isinstance(item, str) else item, max_side)


def folder_frames(path: str) -> list[str]:
    """The image files of a folder in natural order (frame_2 before frame_10), their names (without extension)
    distinct; one error naming the folder otherwise."""
    names = sorted((n for n in os.listdir(path) if n.lower().endswith(IMAGE_EXTENSIONS)
                    and os.path.isfile(os.path.join(path, n))), key=natural_key)
    if not names:
        raise MissingFileError(f"no image frames ({', '.join(IMAGE_EXTENSIONS)}) in folder {path}")
    stems: dict[str, str] = {}
    for name in names:
        stem = os.path.splitext(name)[0]
        if stem in stems:
            raise DataError(f"frames {stems[stem]} and {name} in {path} share the name {stem!r}, which names their "
                            f"masks: keep one of them")
        stems[stem] = name
    return [os.path.join(path, n) for n in names]


def frame_count(path: str) -> int | None:
    """How many frames a video file's container declares, or a folder holds; None when unknown."""
    if os.path.isdir(path):
        return len(folder_frames(path))
    capture = cv2.VideoCapture(path)
    try:
        count = int(capture.get(cv2.CAP_PROP_FRAME_COUNT)) if capture.isOpened() else 0
    finally:
        capture.release()
    return count if count > 0 else None


def video_frame_sources(path: str, accept_partial: bool = False) -> Iterator[str | np.ndarray]:
    """A folder's image paths (natural order, left to decode), or a video file's decoded BGR frames."""
    if os.path.isdir(path):
        yield from folder_frames(path)
    elif os.path.isfile(path):
        yield from _video_file_frames(path, accept_partial)
    else:
        raise MissingFileError(f"video not found: {path} (give a video file or a folder of frames)")


def shrink_frame(frame: np.ndarray, max_side: int | None) -> np.ndarray:
    """`frame` shrunk (area interpolation) so that its longer side is at most `max_side`; unchanged without one."""
    if not max_side or max(frame.shape[:2]) <= max_side:
        return frame
    scale = max_side / max(frame.shape[:2])
    size = (round(frame.shape[1] * scale), round(frame.shape[0] * scale))
    return cv2.resize(frame, size, interpolation=cv2.INTER_AREA)


def _video_file_frames(path: str, accept_partial: bool) -> Iterator[np.ndarray]:
    capture = cv2.VideoCapture(path)
    if not capture.isOpened():
        raise DataError(f"cannot open {path} as a video: not a video file, or in a format this build of FFmpeg "
                        f"cannot decode")
    declared = int(capture.get(cv2.CAP_PROP_FRAME_COUNT))
    count, decoder_messages = 0, []
    try:
        while True:
            with _stderr_captured() as captured:  # FFmpeg's complaints become part of our one line
                ok, frame = capture.read()
            decoder_messages += captured()
            if not ok:
                break
            count += 1
            yield frame
    finally:
        capture.release()
    if count == 0:
        raise DataError(f"no frames could be decoded from video {path}")
    if count < declared and not accept_partial:
        said = f"; the decoder said: {decoder_messages[-1].strip()}" if decoder_messages else ""
        raise DamagedVideoError(f"video {path} is damaged: {count} frames decoded of the {declared} its container "
                         f"declares (the masks of those are kept; --accept_partial_video takes what decodes){said}")


def video_fps(path: str, default: float = 24.0) -> float:
    """The frame rate of a video file, or `default` for folders and unknown rates."""
    if not os.path.isfile(path):
        return default
    capture = cv2.VideoCapture(path)
    fps = capture.get(cv2.CAP_PROP_FPS)
    capture.release()
    return fps if fps and fps > 0 else default
