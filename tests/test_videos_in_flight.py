"""Several videos in flight (TEST_VIDEOS_IN_FLIGHT): each keeps its own window and gets the results it gets alone."""
from __future__ import annotations

import os
import shutil

import cv2
import numpy as np

from inference.options import InferenceOptions
from inference.segmenter import VideoInput, VideoSegmenter
from networks.lsta import LSTA
from tests.helpers.builders import preset_config
from tests.helpers.runs import eval_davis
from utils.image_io import folder_frames, read_image


def _davis_of_many(toy_root: str, root) -> list[str]:
    """A DAVIS-2016 split of five sequences: two lengths under and over the window, two frame sizes."""
    davis = os.path.join(toy_root, "DAVIS")
    shutil.copytree(davis, root)
    frames = os.path.join(root, "JPEGImages", "480p")
    truth = os.path.join(root, "Annotations", "480p")
    short, wide = os.path.join(frames, "short"), os.path.join(frames, "wide")
    shutil.copytree(os.path.join(frames, "toy-val-00"), short)
    for name in sorted(os.listdir(short))[3:]:  # 3 frames: shorter than the window of 4
        os.remove(os.path.join(short, name))
    shutil.copytree(os.path.join(truth, "toy-val-00"), os.path.join(truth, "short"))
    shutil.copytree(os.path.join(frames, "toy-val-01"), wide)
    shutil.copytree(os.path.join(truth, "toy-val-01"), os.path.join(truth, "wide"))
    for name in os.listdir(wide):  # another frame size: a batch of its own
        image = cv2.imread(os.path.join(wide, name))
        cv2.imwrite(os.path.join(wide, name), cv2.resize(image, (160, 120)))
        mask = cv2.imread(os.path.join(truth, "wide", name[:-4] + ".png"), cv2.IMREAD_GRAYSCALE)
        cv2.imwrite(os.path.join(truth, "wide", name[:-4] + ".png"), cv2.resize(mask, (160, 120),
                                                                              interpolation=cv2.INTER_NEAREST))
    sequences = ["toy-val-00", "short", "toy-train-00", "wide", "toy-val-01"]
    with open(os.path.join(root, "ImageSets", "2016", "val.txt"), "w") as f:
        f.write("\n".join(sequences) + "\n")
    return sequences


def _files(folder) -> dict[str, bytes]:
    found = {}
    for base, _, names in os.walk(folder):
        for name in names:
            if name.endswith(".png"):
                with open(os.path.join(base, name), "rb") as f:
                    found[os.path.relpath(os.path.join(base, name), folder)] = f.read()
    return found


def test_eval_with_videos_in_flight_writes_the_same_bytes(toy_root, toy_weights, tmp_path):
    sequences = _davis_of_many(toy_root, tmp_path / "DAVIS")
    written = {}
    for videos in (1, 3):
        out = tmp_path / f"in_flight_{videos}"
        run = eval_davis(tmp_path / "DAVIS", toy_weights, out, "--save_probs",
                         opts=("TEST_VIDEOS_IN_FLIGHT", str(videos), "TEST_ENCODE_BATCH", "2"))
        assert run.returncode == 0, run.stderr[-3000:]
        written[videos] = _files(out)
    assert written[1].keys() == written[3].keys()
    assert {path.split(os.sep)[0] for path in written[1]} >= set(sequences)
    assert len([p for p in written[1] if p.startswith("short" + os.sep)]) == 3
    different = [path for path in written[1] if written[1][path] != written[3][path]]
    assert not different, different[:5]


def test_videos_batched_together_keep_their_own_results(toy_root, tmp_path):
    """Frames of several videos in one encoder call (a GPU's way, forced here): each video's results are those it
    gets alone, frame for frame, in order, up to the rounding of another batch size."""
    sequences = _davis_of_many(toy_root, tmp_path / "DAVIS")
    videos = {name: [read_image(p) for p in folder_frames(str(tmp_path / "DAVIS" / "JPEGImages" / "480p" / name))]
              for name in sequences}
    cfg = preset_config("toy")
    model = LSTA.from_config(cfg).eval()
    segmenter = VideoSegmenter(model, InferenceOptions(window=4, encode_batch=2, videos_in_flight=3))
    segmenter.batch_across_videos = True
    alone = {name: list(segmenter.segment(frames)) for name, frames in videos.items()}
    together: dict[str, list] = {name: [] for name in videos}
    finished = []
    for video, frame in segmenter.segment_videos(VideoInput(frames, key=name) for name, frames in videos.items()):
        if frame is None:
            finished.append(video.key)
        else:
            assert video.key not in finished
            together[video.key].append(frame)
    assert sorted(finished) == sorted(videos)
    for name, frames in together.items():
        assert [f.index for f in frames] == list(range(len(videos[name])))
        assert [f.name for f in frames] == [f.name for f in alone[name]]
        for mine, reference in zip(frames, alone[name]):
            assert mine.mask.shape == videos[name][0].shape[:2]
            assert np.abs(mine.probability - reference.probability).max() < 1e-3
            assert (mine.mask == reference.mask).mean() >= 0.999
