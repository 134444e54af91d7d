"""The one image reader and mask writer of the project: clear errors that name the file."""
from __future__ import annotations

import glob
import os
from typing import Iterator

import cv2
import numpy as np
from PIL import Image


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


def use_one_opencv_thread() -> None:
    """Run OpenCV on one thread in this process: its resizes then give the same bits on any machine."""
    # Multi-threaded cv2.resize differs by ~1e-6 from single-threaded (row stripes); training
    # samples must not depend on whether they are made in the main process or in a worker.
    if cv2.getNumThreads() != 1:
        cv2.setNumThreads(1)


def read_image(path: str) -> np.ndarray:
    """A frame as OpenCV reads it: (H,W,3) uint8 in **BGR** order (the model is trained on BGR)."""
    if not os.path.isfile(path):
        raise FileNotFoundError(f"image not found: {path}")
    image = cv2.imread(path, cv2.IMREAD_COLOR)
    if image is None:
        raise ValueError(f"unreadable or corrupt image: {path}")
    if _truncated_jpeg(path):
        raise ValueError(f"truncated image (no JPEG end marker): {path}")
    return image


def read_mask(path: str) -> np.ndarray:
    """A mask as (H,W) uint8: palette indices for palette PNGs, grey values otherwise."""
    if not os.path.isfile(path):
        raise FileNotFoundError(f"mask not found: {path}")
    try:
        with Image.open(path) as img:
            img.load()
            if img.mode in ("P", "L", "1"):
                mask = np.array(img.convert("L") if img.mode == "1" else img, dtype=np.uint8)
            else:
                mask = np.array(img.convert("L"), dtype=np.uint8)
    except (OSError, SyntaxError) as err:
        raise ValueError(f"unreadable or corrupt mask: {path} ({err})") from None
    return mask


def read_binary_mask(path: str) -> np.ndarray:
    """A mask as (H,W) bool: any nonzero index or grey value is foreground."""
    return read_mask(path) > 0


def write_palette_png(path: str, mask: np.ndarray) -> None:
    """Write an index map as a DAVIS palette PNG (index 1 = object)."""
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    img = Image.fromarray(np.asarray(mask, dtype=np.uint8), mode="P")
    img.putpalette(_PALETTE)
    img.save(path)


def write_image(path: str, image: np.ndarray, quality: int = 95) -> None:
    """Write a BGR uint8 image (JPEG or PNG by extension)."""
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    params = [cv2.IMWRITE_JPEG_QUALITY, quality, cv2.IMWRITE_JPEG_SAMPLING_FACTOR, cv2.IMWRITE_JPEG_SAMPLING_FACTOR_444] if path.lower().endswith((".jpg", ".jpeg")) else []
    if not cv2.imwrite(path, image, params):
        raise OSError(f"could not write image: {path}")


def _truncated_jpeg(path: str) -> bool:
    # OpenCV decodes a cut-off JPEG with only a warning and grey filling; the end marker tells.
    if not path.lower().endswith((".jpg", ".jpeg")):
        return False
    with open(path, "rb") as f:
        f.seek(0, os.SEEK_END)
        size = f.tell()
        f.seek(max(0, size - 16))
        tail = f.read()
    return b"\xff\xd9" not in tail


IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".webp")


def iter_video_frames(path: str, max_side: int | None = None) -> Iterator[np.ndarray]:
    """BGR frames of a video file (anything OpenCV reads) or a folder of images (sorted by name).

    With `max_side`, frames whose longer side exceeds it are shrunk (area interpolation).
    """
    if os.path.isdir(path):
        files = sorted(p for p in glob.glob(os.path.join(path, "*")) if p.lower().endswith(IMAGE_EXTENSIONS))
        if not files:
            raise FileNotFoundError(f"no image frames ({', '.join(IMAGE_EXTENSIONS)}) in folder {path}")
        frames = (read_image(p) for p in files)
    elif os.path.isfile(path):
        frames = _video_file_frames(path)
    else:
        raise FileNotFoundError(f"video not found: {path} (give a video file or a folder of frames)")
    for frame in frames:
        if max_side and max(frame.shape[:2]) > max_side:
            scale = max_side / max(frame.shape[:2])
            size = (round(frame.shape[1] * scale), round(frame.shape[0] * scale))
            frame = cv2.resize(frame, size, interpolation=cv2.INTER_AREA)
        yield frame


def _video_file_frames(path: str) -> Iterator[np.ndarray]:
    capture = cv2.VideoCapture(path)
    if not capture.isOpened():
        raise ValueError(f"OpenCV cannot open video {path}")
    count = 0
    try:
        while True:
            ok, frame = capture.read()
            if not ok:
                break
            count += 1
            yield frame
    finally:
        capture.release()
    if count == 0:
        raise ValueError(f"no frames could be decoded from video {path}")


def video_fps(path: str, default: float = 24.0) -> float:
    """The frame rate of a video file, or `default` for folders and unknown rates."""
    if not os.path.isfile(path):
        return default
    capture = cv2.VideoCapture(path)
    fps = capture.get(cv2.CAP_PROP_FPS)
    capture.release()
    return fps if fps and fps > 0 else default
