"""Frame preprocessing: the authors' training augmentation chain and the eval-time resize.

Frames stay in OpenCV's BGR order throughout and are normalised with the ImageNet RGB mean/std
applied to the B, G, R channels in that order: the released weights were trained on exactly this.
All random draws of one sample come from one `np.random.RandomState`, the same for every frame.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import cv2
import numpy as np
import torch

from config import MIN_FRAME_SIDE
from utils.errors import DataError
from utils.image_io import IMAGENET_MEAN, IMAGENET_STD

MEAN = np.array(IMAGENET_MEAN)  # float64, as the authors' tuples
STD = np.array(IMAGENET_STD)
CROP_MIN_OBJECT_PIXELS = 100
CROP_MAX_OBJECTS = 5


def normalise(image: np.ndarray) -> torch.Tensor:
    """(H,W,3) BGR uint8/float image in [0,255] → (3,H,W) float32, (x/255 − mean)/std per channel."""
    # The authors' arithmetic, bit for bit: a float32 division, then the mean and std applied in
    # float64 and stored back in float32 (numpy's in-place ops with float64 tuples). Done per
    # contiguous channel plane with explicit casts: the same values, several times faster.
    planes = cv2.split(np.asarray(image, np.float32))
    out = np.empty((3,) + planes[0].shape, np.float32)
    for c, plane in enumerate(planes):
        x = (plane / np.float32(255.0)).astype(np.float64)
        x -= MEAN[c]
        x = x.astype(np.float32).astype(np.float64)
        x /= STD[c]
        out[c] = x
    return torch.from_numpy(out)


def eval_size(height: int, width: int, max_size: int = 1040, scale: float = 1.0) -> tuple[int, int]:
    """The authors' test-time size: long edge capped at `max_size`, each side of the form 16k+1.

    `scale` (test-time multi-scale) scales the frame and the cap alike; 1 is the authors' size.
    """
    if scale != 1.0:
        height, width, max_size = round(height * scale), round(width * scale), max_size * scale
    if max(height, width) > max_size:
        factor = max_size / max(height, width)
        height, width = int(factor * height), int(factor * width)
    fix = lambda n: n if (n - 1) % 16 == 0 else int(np.round((n - 1) / 16)) * 16 + 1  # noqa: E731
    return fix(height), fix(width)


def eval_preprocess(image: np.ndarray, max_size: int = 1040, source: str = "frame", scale: float = 1.0) -> torch.Tensor:
    """A BGR frame → (3,H',W') normalised tensor at `eval_size` (cubic resize when the size changes).

    ValueError naming `source` when the frame is smaller than the network accepts.
    """
    h, w = eval_size(image.shape[0], image.shape[1], max_size, scale)
    if min(h, w) < MIN_FRAME_SIDE:
        raise DataError(f"{source} is {image.shape[1]}x{image.shape[0]}, too small: the network needs sides of at "
                         f"least {MIN_FRAME_SIDE} pixels after the resize to 16k+1 sides (here {w}x{h})")
    if (h, w) != image.shape[:2]:
        image = cv2.resize(np.asarray(image, np.float32), (w, h), interpolation=cv2.INTER_CUBIC)
    return normalise(image)


@dataclass(frozen=True)
class Augmentation:
    """The training augmentation's settings (DATA_* keys)."""
    crop: tuple[int, int]           # DATA_RANDOMCROP (h, w)
    flip: float                     # DATA_RANDOMFLIP
    scale_range: tuple[float, float]  # DATA_MIN_SCALE_FACTOR, DATA_MAX_SCALE_FACTOR
    short_edge: int                 # DATA_SHORT_EDGE_LEN
    crop_tries: int                 # DATA_MAX_CROP_STEPS

    @classmethod
    def from_config(cls, cfg: Any) -> "Augmentation":
        """The augmentation a Config describes."""
        return cls(tuple(cfg.DATA_RANDOMCROP), cfg.DATA_RANDOMFLIP, (cfg.DATA_MIN_SCALE_FACTOR, cfg.DATA_MAX_SCALE_FACTOR),
                   cfg.DATA_SHORT_EDGE_LEN, cfg.DATA_MAX_CROP_STEPS)


def random_scale(images: list[np.ndarray], masks: list[np.ndarray], rng: np.random.RandomState,
                 scale_range: tuple[float, float], short_edge: int,
                 reference_index: int) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Resize all frames by U(min,max) · short_edge / (short edge of frame `reference_index`)."""
    scale = rng.uniform(*scale_range) * short_edge / min(images[reference_index].shape[:2])
    images = [cv2.resize(im, None, fx=scale, fy=scale, interpolation=cv2.INTER_CUBIC) for im in images]
    masks = [cv2.resize(m, None, fx=scale, fy=scale, interpolation=cv2.INTER_NEAREST) for m in masks]
    return images, masks


def balanced_random_crop(images: list[np.ndarray], masks: list[np.ndarray], rng: np.random.RandomState,
                         size: tuple[int, int], max_tries: int = 5
                         ) -> tuple[list[np.ndarray], list[np.ndarray], int]:
    """Crop keeping a reference object (mask 0) in view; renumber its large objects 1..K in all masks.

    Returns (images, masks, K). When no try shows an object of > 100 pixels, the last crop is kept
    with every mask zeroed (K = 0), as the authors do.
    """
    h, w = masks[0].shape
    crop_h, crop_w = min(size[0], h), min(size[1], w)
    for _ in range(max_tries):
        top = rng.randint(0, h - crop_h + 1)
        left = rng.randint(0, w - crop_w + 1)
        ref_crop = masks[0][top:top + crop_h, left:left + crop_w]
        ids, counts = np.unique(ref_crop, return_counts=True)
        kept = [int(i) for i, c in zip(ids, counts) if i != 0 and c > CROP_MIN_OBJECT_PIXELS]
        if kept:
            break
    images = [im[top:top + crop_h, left:left + crop_w] for im in images]
    masks = [m[top:top + crop_h, left:left + crop_w] for m in masks]
    if len(kept) > CROP_MAX_OBJECTS:
        kept = sorted(rng.choice(kept, CROP_MAX_OBJECTS, replace=False).tolist())
    lookup = np.zeros(256, np.uint8)
    for new_id, old_id in enumerate(kept, start=1):
        lookup[old_id] = new_id
    return images, [lookup[m] for m in masks], len(kept)


def augment(images: list[np.ndarray], masks: list[np.ndarray], rng: np.random.RandomState, settings: Augmentation,
            scale_reference: int) -> tuple[list[torch.Tensor], list[torch.Tensor], int]:
    """The training chain on one sample (frame 0 = reference): scale, balanced crop, flip, resize, tensor.

    Returns normalised image tensors (3,H,W), id-map tensors (1,H,W) uint8, and the object count K.
    """
    crop = settings.crop
    images, masks = random_scale(images, masks, rng, settings.scale_range, settings.short_edge, scale_reference)
    images, masks, num_objects = balanced_random_crop(images, masks, rng, crop, settings.crop_tries)
    if rng.rand() < settings.flip:
        images = [im[:, ::-1] for im in images]
        masks = [m[:, ::-1] for m in masks]
    if images[0].shape[:2] != tuple(crop):
        images = [cv2.resize(np.ascontiguousarray(im), (crop[1], crop[0]), interpolation=cv2.INTER_CUBIC)
                  for im in images]
        masks = [cv2.resize(np.ascontiguousarray(m), (crop[1], crop[0]), interpolation=cv2.INTER_NEAREST)
                 for m in masks]
    image_tensors = [normalise(im) for im in images]
    mask_tensors = [torch.from_numpy(np.ascontiguousarray(m))[None] for m in masks]
    return image_tensors, mask_tensors, num_objects
