"""Video datasets on disk, as the training and evaluation readers both find them.

Split files (`ImageSets/...txt`: one sequence per line, or DAVIS-2016's own image/mask pairs),
sequence names checked to be folder names, and the frames of a DAVIS sequence.
"""
from __future__ import annotations

import os

from utils.errors import DataError, MissingFileError
from utils.files import read_text_lines
from utils.names import control_characters, natural_key


def require_dir(path: str, what: str, hint: str) -> None:
    """One error naming a missing folder, what it is and what it should hold."""
    if not os.path.isdir(path):
        raise MissingFileError(f"{what} not found: {path} ({hint})")


def read_split_names(path: str, nested: bool = False) -> list[str]:
    """Sequence names listed in a split file, each checked to be a name (see check_sequence_name)."""
    names = [line.split()[0] for line in read_text_lines(path, "split file") if line.strip()]
    if not names:
        raise DataError(f"split file {path} lists no sequences")
    for name in names:
        check_sequence_name(name, path, nested)
    return names


def check_sequence_name(name: str, source: str, nested: bool = False) -> None:
    """A sequence name is a folder name, never a path: results are written to `<results>/<name>/`.

    `nested` allows `class/video` (YouTube-Objects). An absolute name, `..`, `.`, a backslash or
    an empty part would let results land outside the results folder, even over the ground truth;
    a control character (a newline, a tab, NUL) would break the lines of records that list it.
    """
    controls = control_characters(name)
    if controls:
        raise DataError(f"{source}: sequence name {name!r} holds control characters ({', '.join(controls)}): "
                        f"refusing to evaluate it; rename it")
    parts = name.split("/")
    if (os.path.isabs(name) or "\\" in name or "\0" in name or len(parts) > (2 if nested else 1)
            or any(p in ("", ".", "..") for p in parts)):
        raise DataError(f"{source}: sequence name {name!r} is not a plain folder name "
                        f"({'class/video' if nested else 'no slashes'}, no '..'): refusing to evaluate, since "
                        f"results are written to a folder of that name")


def davis_split_names(root: str, year: str, split: str) -> list[str]:
    """Sequence names from `ImageSets/<year>/<split>.txt`, or DAVIS-2016's `ImageSets/480p/<split>.txt` pairs."""
    require_dir(root, "DAVIS root (DIR_DAVIS)", f"expected JPEGImages/480p, Annotations/480p and "
                                                   f"ImageSets/{year}/{split}.txt; see data/README.md")
    names_file = os.path.join(root, "ImageSets", year, f"{split}.txt")
    pairs_file = os.path.join(root, "ImageSets", "480p", f"{split}.txt")
    if os.path.isfile(names_file):
        return read_split_names(names_file)
    if year == "2016" and os.path.isfile(pairs_file):
        # Lines "/JPEGImages/480p/<seq>/00000.jpg /Annotations/480p/<seq>/00000.png".
        paths = [line.split()[0].strip("/").split("/") for line in read_text_lines(pairs_file, "split file")
                 if line.strip()]
        if not paths or any(len(p) != 4 for p in paths):
            raise DataError(f"split file {pairs_file} is not DAVIS-2016's list of "
                            f"/JPEGImages/480p/<sequence>/<frame>.jpg /Annotations/... pairs")
        names = list(dict.fromkeys(p[2] for p in paths))
        for name in names:
            check_sequence_name(name, pairs_file)
        return names
    raise MissingFileError(f"DAVIS-{year} split file not found: {names_file}"
                            + (f" (nor DAVIS-2016's own {pairs_file})" if year == "2016" else ""))


def davis_frames(root: str, resolution: str, sequence: str) -> list[str]:
    """The `.jpg` frames of a DAVIS sequence in natural order; empty when its folder is missing."""
    folder = os.path.join(root, "JPEGImages", resolution, sequence)
    if not os.path.isdir(folder):
        return []
    return [os.path.join(folder, n) for n in sorted(os.listdir(folder), key=natural_key) if n.lower().endswith(".jpg")]
