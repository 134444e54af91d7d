"""A zip of frames is extracted within limits, and every malformed archive is one error naming it."""
import io
import os
import struct
import zipfile

import numpy as np
import pytest
from PIL import Image

from utils.errors import DataError
from utils.frame_archive import extract_frames

LOCAL, CENTRAL = b"PK\x03\x04", b"PK\x01\x02"


def _png(seed: int) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(np.random.RandomState(seed).randint(0, 255, (40, 50, 3), np.uint8)).save(buffer, format="PNG")
    return buffer.getvalue()


def _zip(members: dict[str, bytes], method=zipfile.ZIP_STORED) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", method) as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    return buffer.getvalue()


def _patch_headers(data: bytes, flags: int | None = None, method: int | None = None) -> bytes:
    """Set the general-purpose flags and the compression method in every local and central header."""
    data = bytearray(data)
    for signature, flag_at, method_at in ((LOCAL, 6, 8), (CENTRAL, 8, 10)):
        start = data.find(signature)
        while start != -1:
            if flags is not None:
                data[start + flag_at:start + flag_at + 2] = struct.pack("<H", flags)
            if method is not None:
                data[start + method_at:start + method_at + 2] = struct.pack("<H", method)
            start = data.find(signature, start + 4)
    return bytes(data)


def _bad_crc(data: bytes) -> bytes:
    """A stored archive with one byte of its first member's data changed (its CRC no longer matches)."""
    data = bytearray(data)
    name_length, extra_length = struct.unpack("<HH", data[26:30])
    data[30 + name_length + extra_length + 40] ^= 0xFF
    return bytes(data)


FRAMES = {f"clip/{i:05d}.png": _png(i) for i in range(4)}
# (case, archive bytes, limits (frames, bytes), words of the one error)
CASES = [
    ("not a zip", b"PK but not a zip at all", (100, 2 ** 30), "not a readable zip"),
    ("truncated", _zip(FRAMES)[:600], (100, 2 ** 30), "not a readable zip"),
    ("no frames", _zip({"notes.txt": b"hello"}), (100, 2 ** 30), "holds no image frames"),
    ("too many frames", _zip(FRAMES), (3, 2 ** 30), "holds 4 frames; the limit is 3"),
    ("expands past the limit", _zip({"bomb.png": b"\0" * (3 * 2 ** 20)}, zipfile.ZIP_DEFLATED), (100, 2 ** 20),
     "expands to 3 MB of frames; the limit is 1 MB"),
    ("bad CRC", _bad_crc(_zip(FRAMES)), (100, 2 ** 30), "is damaged: clip/00000.png"),
    ("encrypted", _patch_headers(_zip(FRAMES), flags=1), (100, 2 ** 30), "is encrypted"),
    ("unknown compression", _patch_headers(_zip(FRAMES), method=99), (100, 2 ** 30), "compression method"),
]


@pytest.mark.parametrize("case, data, limits, words", CASES, ids=[c[0] for c in CASES])
def test_every_malformed_archive_is_one_error(tmp_path, case, data, limits, words):
    path = tmp_path / "upload.zip"
    path.write_bytes(data)
    with pytest.raises(DataError, match=words) as caught:
        extract_frames(str(path), str(tmp_path / "frames"), "upload.zip", *limits)
    message = str(caught.value)
    assert "\n" not in message and "upload.zip" in message
    assert not (tmp_path / "frames").exists()  # nothing half-extracted is left


def test_a_good_archive_is_extracted_flat(tmp_path):
    path = tmp_path / "upload.zip"
    path.write_bytes(_zip({**FRAMES, "clip/.hidden.png": b"x", "clip/readme.txt": b"y"}, zipfile.ZIP_DEFLATED))
    folder = extract_frames(str(path), str(tmp_path / "frames"), "upload.zip", 100, 2 ** 30)
    assert sorted(os.listdir(folder)) == [f"{i:05d}.png" for i in range(4)]
    assert open(os.path.join(folder, "00002.png"), "rb").read() == FRAMES["clip/00002.png"]
