"""Evaluation data: the video layouts benchmarks are distributed in, read into EvalSequences.

- DAVIS: `JPEGImages/<res>/<seq>/*.jpg`, `Annotations/<res>/<seq>/*.png`, sequences from
  `ImageSets/<year>/<split>.txt` (DAVIS-2016's own release: `ImageSets/480p/<split>.txt` pairs).
- Folder layout (FBMS, Long-Videos, SegTrack-v2, ViSal, DAVSOD, YouTube-VOS valid, your own):
  `JPEGImages/<seq>/<frame>` and `Annotations/<seq>/<frame>.png`; annotations may be sparse (only
  frames with a PNG are scored); sequences from `ImageSets/<split>.txt` when present, else every
  folder. YouTube-Objects also as `JPEGImages/<class>/<video>/` (class = the outer folder).
Ground truth is binarised as any nonzero pixel (palette index or grey value) by the scorers.
"""
from __future__ import annotations

import os
import re
from dataclasses import dataclass, field

from dataloaders.layouts import (
    check_sequence_name,
    davis_frames,
    davis_split_names,
    read_split_names,
    require_dir,
)
from utils.errors import DataError, MissingFileError
from utils.image_io import IMAGE_EXTENSIONS, check_same_size
from utils.names import control_characters, natural_key


@dataclass
class EvalSequence:
    """One evaluation video: frame paths in order, ground truth per frame name where annotated."""
    name: str                      # also its results folder (may hold a '/': class/video)
    images: list[str]
    annotations: dict[str, str] = field(default_factory=dict)  # frame name → ground-truth PNG
    group: str = ""                # YouTube-Objects: the class
    video: str = ""                # a video file to decode instead of `images`

    @property
    def frame_names(self) -> list[str]:
        """Each frame's name: its file name without extension."""
        return [os.path.splitext(os.path.basename(p))[0] for p in self.images]

    @property
    def masks(self) -> list[str]:
        """Ground-truth paths of the annotated frames, in frame order."""
        return [self.annotations[n] for n in self.frame_names if n in self.annotations]


def _frames(folder: str) -> list[str]:
    """A folder's image files in natural order (frame_2 before frame_10); a name with control characters is refused."""
    names = sorted((n for n in os.listdir(folder) if n.lower().endswith(IMAGE_EXTENSIONS)), key=natural_key)
    for name in names:
        if control_characters(name):
            raise DataError(f"frame {name!r} in {folder} holds control characters "
                            f"({', '.join(control_characters(name))}): rename it")
    return [os.path.join(folder, n) for n in names]


def _annotations(folder: str) -> dict[str, str]:
    if not os.path.isdir(folder):
        return {}
    return {os.path.splitext(n)[0]: os.path.join(folder, n) for n in sorted(os.listdir(folder))
            if n.lower().endswith(".png")}


def davis_sequences(root: str, year: str = "2016", split: str = "val", resolution: str = "480p") -> list[EvalSequence]:
    """The sequences of a DAVIS split, each checked: frames present, one mask per frame, equal sizes."""
    sequences = []
    for name in davis_split_names(root, year, split):
        images = davis_frames(root, resolution, name)
        if not images:
            raise MissingFileError(f"DAVIS sequence {name!r} has no frames in "
                                    f"{os.path.join(root, 'JPEGImages', resolution, name)}")
        seq = EvalSequence(name, images, _annotations(os.path.join(root, "Annotations", resolution, name)))
        for frame, image in zip(seq.frame_names, images):
            mask = os.path.join(root, "Annotations", resolution, name, frame + ".png")
            if frame not in seq.annotations:
                raise MissingFileError(f"DAVIS sequence {name!r}: frame {image} has no mask {mask}")
            check_same_size(image, mask)
        sequences.append(seq)
    return sequences


def _frames_or_empty(folder: str) -> list[str]:
    return _frames(folder) if os.path.isdir(folder) else []


def folder_sequences(root: str, split: str | None = None, what: str = "benchmark", nested: bool = False,
                     check_sizes: bool = True) -> list[EvalSequence]:
    """Sequences of the folder layout: `JPEGImages/<seq>/`, sparse `Annotations/<seq>/*.png`.

    `ImageSets/<split>.txt` lists the sequences when it exists, else every folder is one. With
    `nested`, a folder whose subfolders hold the frames is a class of videos (YouTube-Objects'
    `<class>/<video>/`); without it, the class is the name's leading letters (`aeroplane0001`).
    """
    images_root = os.path.join(root, "JPEGImages")
    require_dir(images_root, f"{what} frames folder", f"expected {root}/JPEGImages/<sequence>/<frame>.jpg and "
                                                       f"Annotations/<sequence>/<frame>.png; see docs/evaluation.md")
    split_file = os.path.join(root, "ImageSets", f"{split}.txt") if split else None
    if split_file and os.path.isfile(split_file):
        names = read_split_names(split_file, nested=True)
    else:
        names = _sequence_folders(images_root, nested)
    sequences = []
    for name in names:
        images = _frames_or_empty(os.path.join(images_root, name))
        if not images:
            raise MissingFileError(f"{what} sequence {name!r} has no frames in {os.path.join(images_root, name)}")
        group = name.split("/")[0] if "/" in name else re.sub(r"[^a-zA-Z].*$", "", name) or name
        seq = EvalSequence(name, images, _annotations(os.path.join(root, "Annotations", name)), group)
        if check_sizes:
            frames = dict(zip(seq.frame_names, images))
            for frame, mask in seq.annotations.items():
                if frame not in frames:
                    raise MissingFileError(f"{what} sequence {name!r}: annotation {mask} has no frame")
                check_same_size(frames[frame], mask)
        sequences.append(seq)
    if not sequences:
        raise MissingFileError(f"no sequences in {images_root}")
    return sequences


def _sequence_folders(images_root: str, nested: bool) -> list[str]:
    names = []
    for name in sorted(os.listdir(images_root)):
        path = os.path.join(images_root, name)
        if not os.path.isdir(path):
            continue
        check_sequence_name(name, images_root)
        inner = sorted(d for d in os.listdir(path) if os.path.isdir(os.path.join(path, d)))
        if nested or (inner and not _frames(path)):
            for video in inner:
                check_sequence_name(f"{name}/{video}", images_root, nested=True)
            names += [f"{name}/{d}" for d in inner]
        else:
            names.append(name)
    return names


VIDEO_EXTENSIONS = (".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v", ".mpg", ".mpeg")


def video_folder_sequences(root: str) -> list[EvalSequence]:
    """Every video under `root`: the folder layout when it has JPEGImages/, else each subfolder of
    frames and each video file (unscored)."""
    require_dir(root, "video folder (--root)", "a folder of videos: subfolders of frames or video files")
    if os.path.isdir(os.path.join(root, "JPEGImages")):
        return folder_sequences(root, None, "video folder")
    sequences = []
    for name in sorted(os.listdir(root)):
        path = os.path.join(root, name)
        if os.path.isdir(path) and _frames(path):
            check_sequence_name(name, root)
            sequences.append(EvalSequence(name, _frames(path)))
        elif os.path.isfile(path) and name.lower().endswith(VIDEO_EXTENSIONS):
            check_sequence_name(os.path.splitext(name)[0], root)
            sequences.append(EvalSequence(os.path.splitext(name)[0], [], video=path))
    if not sequences:
        raise MissingFileError(f"no videos in {root}: expected subfolders of frames or video files "
                                f"({', '.join(VIDEO_EXTENSIONS)})")
    return sequences
