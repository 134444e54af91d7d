"""Evaluation data: DAVIS-2016 val sequences and their frames, preprocessed as the authors do."""
from __future__ import annotations

import glob
import os
from dataclasses import dataclass

import torch
from PIL import Image
from torch.utils.data import Dataset

from dataloaders.transforms import eval_preprocess
from utils.image_io import read_image


@dataclass
class EvalSequence:
    """One evaluation video: frame paths in order, and ground-truth mask paths where present."""
    name: str
    images: list[str]
    masks: list[str]


def davis2016_sequence_names(root: str, split: str = "val") -> list[str]:
    """Sequence names from `ImageSets/2016/<split>.txt` (DAVIS-2017 release) or `ImageSets/480p/<split>.txt` (DAVIS-2016)."""
    if not os.path.isdir(root):
        raise FileNotFoundError(f"DAVIS root (DIR_DAVIS) not found: {root} (expected JPEGImages/480p, "
                                f"Annotations/480p and ImageSets/2016/{split}.txt; see data/README.md)")
    names_file = os.path.join(root, "ImageSets", "2016", f"{split}.txt")
    pairs_file = os.path.join(root, "ImageSets", "480p", f"{split}.txt")
    if os.path.isfile(names_file):
        with open(names_file) as f:
            return [line.strip() for line in f if line.strip()]
    if os.path.isfile(pairs_file):
        # Lines "/JPEGImages/480p/<seq>/00000.jpg /Annotations/480p/<seq>/00000.png".
        with open(pairs_file) as f:
            names = [line.split()[0].strip("/").split("/")[2] for line in f if line.strip()]
        return list(dict.fromkeys(names))
    raise FileNotFoundError(f"DAVIS-2016 split file not found: neither {names_file} (DAVIS-2017 release) "
                            f"nor {pairs_file} (DAVIS-2016 release)")


def davis2016_sequences(root: str, split: str = "val", resolution: str = "480p") -> list[EvalSequence]:
    """The sequences of DAVIS-2016 `split`, each checked: frames present, one mask per frame, equal sizes."""
    sequences = []
    for name in davis2016_sequence_names(root, split):
        images = sorted(glob.glob(os.path.join(root, "JPEGImages", resolution, name, "*.jpg")))
        if not images:
            raise FileNotFoundError(f"DAVIS sequence {name!r} has no frames in "
                                    f"{os.path.join(root, 'JPEGImages', resolution, name)}")
        masks = [os.path.join(root, "Annotations", resolution, name, os.path.basename(p)[:-4] + ".png")
                 for p in images]
        for image, mask in zip(images, masks):
            if not os.path.isfile(mask):
                raise FileNotFoundError(f"DAVIS sequence {name!r}: frame {image} has no mask {mask}")
            check_same_size(image, mask)
        sequences.append(EvalSequence(name, images, masks))
    return sequences


def check_same_size(image: str, mask: str) -> None:
    """Raise when the mask's size (read from its header) differs from its frame's."""
    try:
        with Image.open(image) as a, Image.open(mask) as b:
            size_a, size_b = a.size, b.size
    except OSError as err:
        raise ValueError(f"unreadable image or mask: {image} / {mask} ({err})") from None
    if size_a != size_b:
        raise ValueError(f"mask {mask} is {size_b[0]}x{size_b[1]} but its frame {image} is {size_a[0]}x{size_a[1]}")


class EvalFrames(Dataset):
    """Frames of one video, preprocessed for the model: (tensor (3,H',W'), original (h, w), frame name)."""

    def __init__(self, images: list[str], max_size: int = 1040) -> None:
        self.images, self.max_size = images, max_size

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, tuple[int, int], str]:
        image = read_image(self.images[index])
        name = os.path.splitext(os.path.basename(self.images[index]))[0]
        return eval_preprocess(image, self.max_size, self.images[index]), image.shape[:2], name
