import filecmp
import json
import os

import numpy as np
from PIL import Image

from dataloaders.toy_data import ToySpec, make_toy_data
from utils.image_io import read_image, read_mask


def _files(root):
    return sorted(os.path.relpath(os.path.join(d, f), root) for d, _, fs in os.walk(root) for f in fs)


def test_davis_layout(toy_root):
    spec = ToySpec()
    davis = os.path.join(toy_root, "DAVIS")
    train = open(os.path.join(davis, "ImageSets/2017/train.txt")).read().split()
    val = open(os.path.join(davis, "ImageSets/2017/val.txt")).read().split()
    assert len(train) == spec.davis_train and len(val) == spec.davis_val
    assert open(os.path.join(davis, "ImageSets/2016/val.txt")).read().split() == val
    ids_per_video = []
    empty_frames = 0
    for seq in train + val:
        frames = sorted(os.listdir(os.path.join(davis, "JPEGImages/480p", seq)))
        masks = sorted(os.listdir(os.path.join(davis, "Annotations/480p", seq)))
        assert frames == [f"{t:05d}.jpg" for t in range(spec.davis_frames)]
        assert [m[:-4] for m in masks] == [f[:-4] for f in frames]
        assert Image.open(os.path.join(davis, "Annotations/480p", seq, masks[0])).mode == "P"
        ids = set()
        for m in masks:
            mask = read_mask(os.path.join(davis, "Annotations/480p", seq, m))
            assert mask.shape == (spec.height, spec.width)
            ids |= set(np.unique(mask).tolist())
            empty_frames += int(mask.max() == 0)
        ids_per_video.append(len(ids - {0}))
        assert read_image(os.path.join(davis, "JPEGImages/480p", seq, frames[0])).shape == (spec.height, spec.width, 3)
    assert max(ids_per_video) >= 2, "some videos must hold several objects"
    assert empty_frames > 0, "some object must leave the view"


def test_youtubevos_layout(toy_root):
    spec = ToySpec()
    ytb = os.path.join(toy_root, "YTB", "train")
    meta = json.load(open(os.path.join(ytb, "meta.json")))
    assert len(meta["videos"]) == spec.ytb_videos
    for vid, info in meta["videos"].items():
        jpgs = sorted(os.listdir(os.path.join(ytb, "JPEGImages", vid)))
        pngs = sorted(os.listdir(os.path.join(ytb, "Annotations", vid)))
        assert len(jpgs) == spec.ytb_frames
        assert pngs == [f"{t:05d}.png" for t in range(0, spec.ytb_frames, spec.ytb_annotation_step)]
        for obj_id, obj in info["objects"].items():
            for name in obj["frames"]:
                assert int(obj_id) in read_mask(os.path.join(ytb, "Annotations", vid, name + ".png"))


def test_object_is_not_findable_from_colour_alone(toy_root):
    # The best per-pixel colour classifier, fitted on the very frame it is scored on (an oracle),
    # still misses the object: its colours are the background's.
    davis = os.path.join(toy_root, "DAVIS")
    for seq in ("toy-val-00", "toy-val-01", "toy-train-01"):
        image = read_image(os.path.join(davis, "JPEGImages/480p", seq, "00003.jpg"))
        mask = read_mask(os.path.join(davis, "Annotations/480p", seq, "00003.png")) > 0
        q = (image // 32).astype(int)
        colour = q[..., 0] * 64 + q[..., 1] * 8 + q[..., 2]
        in_obj = np.bincount(colour[mask], minlength=512)
        in_bg = np.bincount(colour[~mask], minlength=512)
        predicted = (in_obj > in_bg)[colour]
        iou = (predicted & mask).sum() / (predicted | mask).sum()
        assert iou < 0.2, (seq, iou)


def test_same_seed_is_byte_identical_and_other_seed_differs(tmp_path):
    spec = ToySpec(davis_train=2, davis_val=1, davis_frames=4, ytb_videos=1, ytb_frames=6)
    for name, seed in (("a", 3), ("b", 3), ("c", 4)):
        make_toy_data(str(tmp_path / name), seed=seed, spec=spec)
    files = _files(tmp_path / "a")
    assert files == _files(tmp_path / "b") and len(files) > 20
    _, mismatch, errors = filecmp.cmpfiles(tmp_path / "a", tmp_path / "b", files, shallow=False)
    assert mismatch == [] and errors == []
    _, mismatch_c, _ = filecmp.cmpfiles(tmp_path / "a", tmp_path / "c", files, shallow=False)
    assert len(mismatch_c) > 10
