"""A zip of video frames, extracted flat with limits: every malformed or oversized archive is one error.

Only image members count (hidden files and folders are skipped). Names are flattened (no path
inside a zip is trusted) and made safe; two members that would get the same name refuse the
archive rather than drop a frame. The frame count and the expanded size are checked against
their limits from the archive's directory before anything is written, and the bytes actually
written while extracting (a directory can lie). Encrypted members, compression methods Python
cannot read, bad CRCs and truncated data are each one DataError naming the archive.
"""
from __future__ import annotations

import contextlib
import lzma
import os
import shutil
import zipfile
import zlib

from utils.errors import DataError
from utils.image_io import IMAGE_EXTENSIONS
from utils.names import safe_file_name

READABLE_METHODS = {zipfile.ZIP_STORED: "stored", zipfile.ZIP_DEFLATED: "deflate", zipfile.ZIP_BZIP2: "bzip2",
                    zipfile.ZIP_LZMA: "lzma"}
CHUNK = 1 << 20


def _flat_name(member: str) -> str:
    """A member's file name, made safe (utils/names.py)."""
    return safe_file_name(os.path.basename(member))


def image_members(archive: zipfile.ZipFile) -> list[zipfile.ZipInfo]:
    """The archive's members that are frames: image files, not hidden, not folders."""
    return [m for m in archive.infolist() if not m.is_dir() and m.filename.lower().endswith(IMAGE_EXTENSIONS)
            and not os.path.basename(m.filename).startswith(".")]


def frame_members(archive: zipfile.ZipFile, label: str, max_frames: int, max_bytes: int) -> list[zipfile.ZipInfo]:
    """The archive's image members, checked: readable, within the limits, distinct once flattened."""
    members = image_members(archive)
    if not members:
        raise DataError(f"{label} holds no image frames ({', '.join(IMAGE_EXTENSIONS)})")
    if len(members) > max_frames:
        raise DataError(f"{label} holds {len(members)} frames; the limit is {max_frames}")
    expanded = sum(m.file_size for m in members)
    if expanded > max_bytes:
        raise DataError(f"{label} expands to {expanded / 2 ** 20:.0f} MB of frames; the limit is "
                        f"{max_bytes / 2 ** 20:.0f} MB")
    names: dict[str, str] = {}
    for member in members:
        if member.flag_bits & 0x1:
            raise DataError(f"{label} is encrypted ({member.filename}): zip the frames without a password")
        if member.compress_type not in READABLE_METHODS:
            raise DataError(f"{label} uses a compression method that cannot be read here ({member.filename}: method "
                            f"{member.compress_type}); zip it with {' or '.join(READABLE_METHODS.values())}")
        flat = _flat_name(member.filename)
        if flat in names:
            raise DataError(f"{label} holds {names[flat]} and {member.filename}, which are both frame {flat} once "
                            f"folders are set aside: zip the frames of one video")
        names[flat] = member.filename
    return members


def extract_frames(path: str, folder: str, label: str, max_frames: int, max_bytes: int) -> str:
    """The image frames of the zip `path`, extracted flat into `folder` (created); `label` names the archive in errors.

    On any error the partly extracted `folder` is removed (it is the caller's fresh folder).
    """
    try:
        archive = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError, EOFError, ValueError) as err:
        raise DataError(f"{label} is not a readable zip file ({err})") from None
    try:
        with archive:
            members = frame_members(archive, label, max_frames, max_bytes)
            os.makedirs(folder, exist_ok=True)
            written = 0
            for member in members:
                written += _extract(archive, member, os.path.join(folder, _flat_name(member.filename)), label,
                                    max_bytes - written)
    except BaseException:
        with contextlib.suppress(OSError):
            shutil.rmtree(folder)
        raise
    return folder


def _extract(archive: zipfile.ZipFile, member: zipfile.ZipInfo, target: str, label: str, budget: int) -> int:
    """Copy one member to `target`, at most `budget` bytes and no more than it declares; returns its size."""
    written = 0
    try:
        with archive.open(member) as source, open(target, "wb") as out:
            while chunk := source.read(CHUNK):
                written += len(chunk)
                if written > member.file_size or written > budget:
                    raise DataError(f"{label}: {member.filename} expands beyond what the archive declares "
                                    f"({member.file_size} bytes) or past the limit; refusing the archive")
                out.write(chunk)
    except (zipfile.BadZipFile, EOFError, zlib.error, lzma.LZMAError, NotImplementedError, RuntimeError) as err:
        # zipfile reports a bad CRC or truncated data as BadZipFile, a password as RuntimeError
        raise DataError(f"{label} is damaged: {member.filename} cannot be read ({err})") from None
    return written
