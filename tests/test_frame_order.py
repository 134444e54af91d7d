"""Frames are taken in natural order (frame_2 before frame_10), named after their files, and never dropped."""
import os
import zipfile

import numpy as np
import pytest

from evaluation.datasets import video_folder_sequences
from inference.demo_job import DemoJob
from inference.options import InferenceOptions
from inference.segmenter import VideoSegmenter
from networks.weights import load_lsta
from tests.helpers.builders import preset_config
from utils.errors import DataError
from utils.image_io import folder_frames, read_image, read_mask, write_image

NAMES = [f"frame_{i}" for i in range(1, 13)]  # 1, 2, ..., 12: as strings 1, 10, 11, 12, 2, ...


@pytest.fixture(scope="module")
def segmenter(toy_weights):
    model, _ = load_lsta(toy_weights, preset_config("toy"))
    return VideoSegmenter(model, InferenceOptions(window=5))


@pytest.fixture(scope="module")
def toy_frames(toy_root):
    folder = os.path.join(toy_root, "DAVIS", "JPEGImages", "480p", "toy-val-00")
    return [read_image(os.path.join(folder, n)) for n in sorted(os.listdir(folder))]


def _numbered_folder(path, frames):
    for name, frame in zip(NAMES, frames):
        write_image(os.path.join(path, name + ".png"), frame)  # lossless: the same pixels back
    return str(path)


def test_a_folder_is_read_in_natural_order(segmenter, toy_frames, tmp_path):
    folder = _numbered_folder(tmp_path / "frames", toy_frames)
    assert [os.path.basename(p) for p in folder_frames(folder)] == [n + ".png" for n in NAMES]
    from_folder = list(segmenter.segment(folder))
    in_time = list(segmenter.segment(toy_frames))
    assert [f.name for f in from_folder] == NAMES
    assert all(np.array_equal(a.mask, b.mask) for a, b in zip(from_folder, in_time))
    # A benchmark folder of your own videos takes the same order.
    (tmp_path / "videos").mkdir()
    os.rename(folder, tmp_path / "videos" / "clip")
    (sequence,) = video_folder_sequences(str(tmp_path / "videos"))
    assert sequence.frame_names == NAMES


def test_a_zip_is_read_in_natural_order_and_its_masks_keep_the_names(segmenter, toy_frames, tmp_path):
    folder = _numbered_folder(tmp_path / "frames", toy_frames)
    with zipfile.ZipFile(tmp_path / "clip.zip", "w") as archive:
        for name in sorted(os.listdir(folder)):  # stored in string order: 1, 10, 11, 12, 2, ...
            archive.write(os.path.join(folder, name), f"clip/{name}")
    job = DemoJob(segmenter, str(tmp_path / "clip.zip"), str(tmp_path / "j"), 854)
    job.start()
    list(job.updates())
    job = job.folder
    assert sorted(os.listdir(os.path.join(job, "masks", "clip"))) == sorted(n + ".png" for n in NAMES)
    expected = {f.name: f.mask for f in segmenter.segment(toy_frames)}
    for index, name in enumerate(NAMES):
        mask = read_mask(os.path.join(job, "masks", "clip", name + ".png")) > 0
        assert np.array_equal(mask, expected[f"{index:05d}"] > 0), name


@pytest.mark.parametrize("files, words", [
    (["a/00000.png", "b/00000.png"], "a/00000.png and b/00000.png"),     # the same frame once flattened
    (["00000.png", "00000.jpg"], "share the name '00000'"),                # two files, one mask name
])
def test_frames_that_would_share_a_name_are_one_error(segmenter, toy_frames, tmp_path, files, words):
    folder = tmp_path / "src"
    for index, name in enumerate(files):
        write_image(str(folder / name), toy_frames[index])
    with zipfile.ZipFile(tmp_path / "clip.zip", "w") as archive:
        for name in files:
            archive.write(folder / name, name)
    job = DemoJob(segmenter, str(tmp_path / "clip.zip"), str(tmp_path / "j"), 854)
    job.start()
    final = list(job.updates())[-1]
    assert job.state == "failed" and words in final.status and "\n" not in final.status


def test_a_list_of_paths_with_one_name_twice_is_one_error(segmenter, toy_frames, tmp_path):
    write_image(str(tmp_path / "a" / "x.png"), toy_frames[0])
    write_image(str(tmp_path / "b" / "x.png"), toy_frames[1])
    with pytest.raises(DataError, match="named 'x'"):
        list(segmenter.segment([str(tmp_path / "a" / "x.png"), str(tmp_path / "b" / "x.png")]))
