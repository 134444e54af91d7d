"""Training sets: DAVIS-2017 train and YouTube-VOS-2019 train, sampled as the authors sample them.

One sample = reference frame, previous frame and DATA_CURR_SEQ_LEN current frames of one video
(docs/training.md). Every random draw of a sample comes from a RandomState seeded by
(TRAIN_SEED, epoch, index): the same seed, epoch and index give the same sample in any worker,
on any rank, after any resume.
"""
from __future__ import annotations

import json
import os
import warnings
from dataclasses import dataclass

import numpy as np
import torch
from torch.utils.data import Dataset

from config import Config
from dataloaders.layouts import davis_frames, davis_split_names, require_dir
from dataloaders.transforms import Augmentation, augment
from utils.errors import DataError, MissingFileError
from utils.image_io import read_image, read_mask, use_one_opencv_thread

SAMPLE_TRIES = 5
REFERENCE_TRIES = 5
REFERENCE_MIN_PIXELS = 200
MAX_SKIPPED_IN_A_ROW = 100


@dataclass
class Video:
    """A training video: its name and the sampleable (annotated) frames, in order."""
    name: str
    images: list[str]
    masks: list[str]


def reflect(index: int, length: int) -> int:
    """Reflect an index into [0, length-1]: i < 0 → −i, i ≥ n → 2(n−1) − i, repeatedly."""
    if length == 1:
        return 0
    while index < 0 or index >= length:
        index = -index if index < 0 else 2 * (length - 1) - index
    return index


def sample_frame_indices(rng: np.random.RandomState, length: int, num_current: int,
                         max_gap: int) -> tuple[int, list[int]]:
    """(previous index, current indices): random gaps in 1..max_gap, reflected at the ends."""
    gaps = rng.randint(1, max_gap + 1, size=num_current)
    span = int(gaps.sum())
    prev = int(rng.randint(0, length - span)) if length - span > 1 else 0
    currents = [reflect(prev + int(g), length) for g in np.cumsum(gaps)]
    return prev, currents


@dataclass(frozen=True)
class Sampling:
    """How samples are drawn: the seed, current frames per sample, reversal, bad samples, augmentation."""
    seed: int                   # TRAIN_SEED
    num_current: int            # DATA_CURR_SEQ_LEN
    reverse: bool               # DATA_RANDOM_REVERSE_SEQ
    skip_bad: bool              # DATA_SKIP_BAD_SAMPLES
    augmentation: Augmentation  # DATA_RANDOMCROP, DATA_RANDOMFLIP, ...

    @classmethod
    def from_config(cls, cfg: Config) -> "Sampling":
        """The sampling a Config describes."""
        return cls(cfg.TRAIN_SEED, cfg.DATA_CURR_SEQ_LEN, cfg.DATA_RANDOM_REVERSE_SEQ, cfg.DATA_SKIP_BAD_SAMPLES,
                   Augmentation.from_config(cfg))


class VideoTrainDataset(Dataset):
    """Samples of the authors' form from a list of videos; `__getitem__` takes index or (index, epoch)."""

    def __init__(self, videos: list[Video], sampling: Sampling, max_gap: int, repeat: int = 1,
                 name: str = "") -> None:
        if not videos:
            raise DataError(f"{name or 'training set'}: no usable videos")
        self.videos, self.max_gap, self.repeat, self.name = videos, max_gap, repeat, name
        self.seed, self.num_current = sampling.seed, sampling.num_current
        self.reverse, self.skip_bad = sampling.reverse, sampling.skip_bad
        self.augmentation = sampling.augmentation

    def __len__(self) -> int:
        return len(self.videos) * self.repeat

    def videos_by_set(self) -> dict[str, list[Video]]:
        """{set name: its videos}, for the up-front data check."""
        return {self.name: self.videos}

    def __getitem__(self, key: int | tuple[int, int]) -> dict:
        index, epoch = key if isinstance(key, tuple) else (key, 0)
        use_one_opencv_thread()
        skipped = 0
        while True:
            try:
                sample = self.make_sample(index, np.random.RandomState([self.seed, epoch, index, skipped]))
                sample["meta"]["skipped_bad"] = skipped
                return sample
            except (OSError, ValueError) as err:
                if not self.skip_bad:
                    raise
                if skipped >= MAX_SKIPPED_IN_A_ROW:
                    raise DataError(f"gave up after skipping {skipped} bad samples in a row "
                                     f"(DATA_SKIP_BAD_SAMPLES); the last: {err}") from None
                warnings.warn(f"skipping bad training sample ({err})")
                skipped += 1
                index = (index + 1) % len(self)

    def make_sample(self, index: int, rng: np.random.RandomState) -> dict:
        """One sample of video `index % len(videos)`, all draws from `rng`."""
        video = self.videos[index % len(self.videos)]
        order = list(range(len(video.images)))
        if self.reverse and rng.rand() < 0.5:
            order.reverse()
        n = len(order)
        masks_read: dict[int, np.ndarray] = {}

        def mask(i: int) -> np.ndarray:
            if i not in masks_read:
                masks_read[i] = read_mask(video.masks[order[i]])
            return masks_read[i]

        for _ in range(SAMPLE_TRIES):
            prev, currents = sample_frame_indices(rng, n, self.num_current, self.max_gap)
            for _ in range(REFERENCE_TRIES):
                ref = int(rng.randint(0, n))
                if np.count_nonzero(mask(ref)) > REFERENCE_MIN_PIXELS:
                    break
            ref_ids = set(np.unique(mask(ref)).tolist())
            if all(set(np.unique(mask(i)).tolist()) <= ref_ids for i in [prev] + currents):
                break
        picks = [ref, prev] + currents
        # float32 before any resize, as the authors read them (cubic resizing then keeps overshoot).
        images = [read_image(video.images[order[i]]).astype(np.float32) for i in picks]
        masks = [mask(i) for i in picks]
        for i, image, m in zip(picks, images, masks):
            if image.shape[:2] != m.shape:
                raise DataError(f"mask {video.masks[order[i]]} is {m.shape[1]}x{m.shape[0]} but its frame "
                                 f"{video.images[order[i]]} is {image.shape[1]}x{image.shape[0]}")
        image_t, ids_t, num_objects = augment(images, masks, rng, self.augmentation, scale_reference=1)
        labels = [(m >= 1).to(torch.uint8) for m in ids_t]
        return {
            "ref_img": image_t[0], "prev_img": image_t[1], "curr_img": image_t[2:],
            "ref_label": labels[0], "prev_label": labels[1], "curr_label": labels[2:],
            "ref_ids": ids_t[0], "prev_ids": ids_t[1], "curr_ids": ids_t[2:],
            "meta": {"video": video.name, "obj_num": num_objects,
                     "frames": [os.path.basename(video.images[order[i]]) for i in picks]},
        }


def davis2017_videos(root: str, split: str = "train", full_resolution: bool = True) -> list[Video]:
    """DAVIS-2017 videos of `ImageSets/2017/<split>.txt`, every frame annotated."""
    names = davis_split_names(root, "2017", split)
    res = "480p"
    if full_resolution and all(os.path.isdir(os.path.join(root, d, "Full-Resolution"))
                               for d in ("JPEGImages", "Annotations")):
        res = "Full-Resolution"
    videos = []
    for seq in names:
        images = davis_frames(root, res, seq)
        if not images:
            raise MissingFileError(f"DAVIS sequence {seq!r} listed in ImageSets/2017/{split}.txt has no frames in "
                                   f"{os.path.join(root, 'JPEGImages', res, seq)}")
        masks = [os.path.join(root, "Annotations", res, seq, os.path.basename(p)[:-4] + ".png") for p in images]
        videos.append(Video(seq, images, masks))
    return videos


def _read_meta(path: str) -> dict[str, dict[str, list[str]]]:
    """meta.json as {video: {object id: [frame names]}}; one error naming the file for any other shape."""
    def bad(why: str) -> DataError:
        return DataError(f"YouTube-VOS {path} {why}; expected {{\"videos\": {{<video>: {{\"objects\": "
                         f"{{<id>: {{\"frames\": [<frame name>, ...]}}}}}}}}}} as the dataset ships it")
    try:
        with open(path) as f:
            meta = json.load(f)
    except (OSError, ValueError) as err:
        raise bad(f"is unreadable ({err})") from None
    if not isinstance(meta, dict) or not isinstance(meta.get("videos"), dict):
        raise bad("has no 'videos' mapping")
    videos = {}
    for vid, info in meta["videos"].items():
        objects = info.get("objects") if isinstance(info, dict) else None
        if not isinstance(objects, dict):
            raise bad(f"gives video {vid!r} no 'objects' mapping")
        frames = {}
        for obj, desc in objects.items():
            names = desc.get("frames") if isinstance(desc, dict) else None
            if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
                raise bad(f"gives object {obj!r} of video {vid!r} no list of frame names")
            frames[obj] = names
        videos[vid] = frames
    return videos


def youtubevos_videos(root: str, single_object: bool = False) -> list[Video]:
    """YouTube-VOS-2019 train videos from meta.json; only annotated frames (every 5th) are kept."""
    require_dir(root, "YouTube-VOS train root (DIR_YTB)",
                 "expected JPEGImages/, Annotations/, meta.json; see data/README.md")
    meta_path = os.path.join(root, "meta.json")
    if os.path.isfile(meta_path):
        frame_lists = {}
        for vid, objects in sorted(_read_meta(meta_path).items()):
            if single_object and len(objects) != 1:
                continue
            frame_lists[vid] = sorted(set(f for frames in objects.values() if len(frames) >= 2 for f in frames))
    else:
        warnings.warn(f"{meta_path} not found: deriving the YouTube-VOS video list from "
                      f"{os.path.join(root, 'Annotations')} (DATA_SINGLE ignored)")
        require_dir(os.path.join(root, "Annotations"), "YouTube-VOS Annotations folder", "and no meta.json")
        annotations = os.path.join(root, "Annotations")
        frame_lists = {vid: sorted(p[:-4] for p in os.listdir(os.path.join(annotations, vid)) if p.endswith(".png"))
                       for vid in sorted(os.listdir(annotations))
                       if os.path.isdir(os.path.join(annotations, vid))}  # stray files are not videos
    videos = []
    for vid, frames in frame_lists.items():
        if len(frames) < 2:
            continue
        images = [os.path.join(root, "JPEGImages", vid, f + ".jpg") for f in frames]
        masks = [os.path.join(root, "Annotations", vid, f + ".png") for f in frames]
        if not os.path.isfile(images[0]):
            raise MissingFileError(f"YouTube-VOS video {vid!r} has no frame {images[0]}")
        videos.append(Video(vid, images, masks))
    return videos


def build_train_dataset(cfg: Config) -> Dataset:
    """The concatenation of cfg.DATASETS ('davis2017', 'youtubevos')."""
    parts, sampling = [], Sampling.from_config(cfg)
    for name in cfg.DATASETS:
        if name == "davis2017":
            videos = davis2017_videos(cfg.DIR_DAVIS, "train", cfg.TRAIN_DATASET_FULL_RESOLUTION)
            parts.append(VideoTrainDataset(videos, sampling, cfg.DATA_RANDOM_GAP_DAVIS, cfg.DATA_DAVIS_REPEAT,
                                           name))
        elif name == "youtubevos":
            videos = youtubevos_videos(cfg.DIR_YTB, cfg.DATA_SINGLE)
            parts.append(VideoTrainDataset(videos, sampling, cfg.DATA_RANDOM_GAP_YTB, 1, name))
        else:
            raise DataError(f"unknown training set {name!r} in DATASETS; use 'davis2017' and/or 'youtubevos'")
    return parts[0] if len(parts) == 1 else ConcatVideoDatasets(parts)


class ConcatVideoDatasets(Dataset):
    """Several training sets one after another; keys are index or (index, epoch) as for each part."""

    def __init__(self, parts: list[VideoTrainDataset]) -> None:
        self.parts = parts
        self.offsets = np.cumsum([0] + [len(p) for p in parts])

    def __len__(self) -> int:
        return int(self.offsets[-1])

    def videos_by_set(self) -> dict[str, list[Video]]:
        """{set name: its videos}, for the up-front data check."""
        return {name: videos for part in self.parts for name, videos in part.videos_by_set().items()}

    def __getitem__(self, key: int | tuple[int, int]) -> dict:
        index, epoch = key if isinstance(key, tuple) else (key, 0)
        part = int(np.searchsorted(self.offsets, index, side="right")) - 1
        return self.parts[part][(index - int(self.offsets[part]), epoch)]
