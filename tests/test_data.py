import json
import logging
import os
import shutil

import cv2
import numpy as np
import pytest
import torch
from PIL import Image

from config import Config
from dataloaders.data_check import DataError, check_training_data
from dataloaders.loader import LoaderSettings, build_train_loader
from dataloaders.train_datasets import (
    Sampling,
    Video,
    VideoTrainDataset,
    build_train_dataset,
    davis2017_videos,
    reflect,
    sample_frame_indices,
    youtubevos_videos,
)
from dataloaders.transforms import eval_preprocess, eval_size
from evaluation.datasets import davis_sequences
from inference.segmenter import InferenceOptions, VideoSegmenter
from networks.lsta import LSTA
from tests.conftest import shared_path
from tests.helpers.builders import CPU, small_cfg
from training.launch import train
from utils.image_io import read_image


def toy_cfg(root: str, **overrides) -> Config:
    cfg = Config()
    cfg.apply_preset("toy")
    cfg.set("DIR_DATA", root)
    for key, value in overrides.items():
        cfg.set(key, value)
    return cfg


@pytest.mark.parametrize("datasets", [["davis2017"], ["youtubevos"], ["youtubevos", "davis2017"]])
def test_sample_structure(toy_root, datasets):
    cfg = toy_cfg(toy_root, DATASETS=datasets, DATA_RANDOMCROP=(97, 129))
    dataset = build_train_dataset(cfg)
    for index in (0, len(dataset) - 1):
        sample = dataset[(index, 0)]
        images = [sample["ref_img"], sample["prev_img"], *sample["curr_img"]]
        labels = [sample["ref_label"], sample["prev_label"], *sample["curr_label"]]
        ids = [sample["ref_ids"], sample["prev_ids"], *sample["curr_ids"]]
        assert len(sample["curr_img"]) == cfg.DATA_CURR_SEQ_LEN
        assert all(im.shape == (3, 97, 129) and im.dtype == torch.float32 for im in images)
        assert all(lb.shape == (1, 97, 129) and lb.dtype == torch.uint8 for lb in labels)
        for lb, idm in zip(labels, ids):
            assert set(lb.unique().tolist()) <= {0, 1}
            assert torch.equal(lb, (idm >= 1).to(torch.uint8))
        assert int(sample["ref_ids"].max()) == sample["meta"]["obj_num"]
        # Normalised BGR: the mean over a real image lies near 0, the range spans negative values.
        assert images[0].min() < 0 < images[0].max()


def test_same_augmentation_on_every_frame(toy_root):
    # A video whose frames are one image: any per-frame difference would be a per-frame draw.
    videos = davis2017_videos(os.path.join(toy_root, "DAVIS"))
    frozen = Video("frozen", [videos[1].images[4]] * 8, [videos[1].masks[4]] * 8)
    cfg = toy_cfg(toy_root, DATA_RANDOMCROP=(97, 97), DATA_MIN_SCALE_FACTOR=0.9, DATA_MAX_SCALE_FACTOR=1.3)
    dataset = VideoTrainDataset([frozen], Sampling.from_config(cfg), max_gap=3, repeat=6)
    for index in range(6):
        sample = dataset[(index, 0)]
        for image, ids in zip([sample["prev_img"], *sample["curr_img"]], [sample["prev_ids"], *sample["curr_ids"]]):
            assert torch.equal(image, sample["ref_img"])
            assert torch.equal(ids, sample["ref_ids"])


def test_reflection():
    assert [reflect(i, 5) for i in (-3, -1, 0, 4, 5, 7, 12)] == [3, 1, 0, 4, 3, 1, 4]
    assert reflect(9, 1) == 0


def test_gap_rule():
    for length in (1, 2, 5, 9, 40):
        for seed in range(100):
            prev, currents = sample_frame_indices(np.random.RandomState(seed), length, 5, 3)
            gaps = np.random.RandomState(seed).randint(1, 4, size=5)  # the same draws, replayed
            span = int(gaps.sum())
            assert ((1 <= gaps) & (gaps <= 3)).all()
            assert prev == 0 if length - span <= 1 else 0 <= prev < length - span
            assert currents == [reflect(prev + int(c), length) for c in np.cumsum(gaps)]
            assert all(0 <= i < length for i in currents)
    # Long videos: no reflection needed, steps of exactly 1..3.
    prev, currents = sample_frame_indices(np.random.RandomState(1), 100, 5, 3)
    steps = np.diff([prev] + currents)
    assert ((1 <= steps) & (steps <= 3)).all()


def test_determinism_under_seed(toy_root):
    a = build_train_dataset(toy_cfg(toy_root))[(5, 2)]
    b = build_train_dataset(toy_cfg(toy_root))[(5, 2)]
    c = build_train_dataset(toy_cfg(toy_root))[(5, 3)]
    d = build_train_dataset(toy_cfg(toy_root, TRAIN_SEED=7))[(5, 2)]
    assert torch.equal(a["ref_img"], b["ref_img"]) and a["meta"] == b["meta"]
    assert all(torch.equal(x, y) for x, y in zip(a["curr_img"], b["curr_img"]))
    assert not torch.equal(a["ref_img"], c["ref_img"]) or a["meta"] != c["meta"]
    assert not torch.equal(a["ref_img"], d["ref_img"]) or a["meta"] != d["meta"]


def test_samples_are_bit_identical_for_any_workers_and_resumable(toy_root):
    cfg = toy_cfg(toy_root, DATA_RANDOMCROP=(65, 65))
    dataset = build_train_dataset(cfg)
    # The parent has used OpenCV's thread pool: forking workers now could hang them for ever.
    cv2.setNumThreads(4)
    cv2.resize(np.zeros((512, 512, 3), np.float32), (700, 700), interpolation=cv2.INTER_CUBIC)

    def batches(workers, epoch, start, count):
        cfg.set("DATA_WORKERS", workers)
        loader, sampler = build_train_loader(dataset, LoaderSettings.from_config(cfg), batch_size=2)
        sampler.set_position(epoch, start)
        out = []
        for batch in loader:
            out.append(torch.cat([batch["ref_img"], *batch["curr_img"]]))
            if len(out) == count:
                return out
        return out

    main = batches(0, 1, 0, 4)
    assert cv2.getNumThreads() == 1  # samples are made with one OpenCV thread wherever they are made
    for workers in (1, 2):
        assert all(torch.equal(x, y) for x, y in zip(main, batches(workers, 1, 0, 4)))
    resumed = batches(0, 1, 4, 2)  # skip two batches of two
    assert all(torch.equal(x, y) for x, y in zip(main[2:], resumed))
    sampler = build_train_loader(dataset, LoaderSettings.from_config(cfg), 2)[1]
    sampler.set_position(1, 0)
    order = list(sampler)
    direct = dataset[order[0]]  # the dataset alone, in this process
    assert torch.equal(direct["ref_img"], main[0][0])


def test_rank_shares_differ(toy_root):
    cfg = toy_cfg(toy_root)
    dataset = build_train_dataset(cfg)
    _, s0 = build_train_loader(dataset, LoaderSettings.from_config(cfg), 2, rank=0, world_size=2)
    _, s1 = build_train_loader(dataset, LoaderSettings.from_config(cfg), 2, rank=1, world_size=2)
    assert not set(s0) & set(s1)


# ---- bad data: one clear error naming the path ----

@pytest.fixture
def damaged(toy_root, tmp_path):
    root = tmp_path / "copy"
    shutil.copytree(toy_root, root)
    return str(root)


def test_missing_root_and_split(damaged):
    with pytest.raises(FileNotFoundError, match="DIR_DAVIS.*nowhere"):
        davis2017_videos(os.path.join(damaged, "nowhere"))
    os.remove(os.path.join(damaged, "DAVIS/ImageSets/2017/train.txt"))
    with pytest.raises(FileNotFoundError, match="split file not found: .*train.txt"):
        davis2017_videos(os.path.join(damaged, "DAVIS"))
    with pytest.raises(FileNotFoundError, match="DIR_YTB"):
        youtubevos_videos(os.path.join(damaged, "none"))


def test_sequence_without_frames_or_masks(damaged):
    davis = os.path.join(damaged, "DAVIS")
    with open(os.path.join(davis, "ImageSets/2017/train.txt"), "a") as f:
        f.write("ghost\n")
    with pytest.raises(FileNotFoundError, match="'ghost'.*no frames"):
        davis2017_videos(davis)
    with open(os.path.join(davis, "ImageSets/2017/train.txt"), "w") as f:
        f.write("toy-train-00\n")
    os.remove(os.path.join(davis, "Annotations/480p/toy-train-00/00003.png"))
    videos = davis2017_videos(davis)  # listed as the split says; the up-front check finds the gap
    with pytest.raises(DataError, match="davis2017: training file not found: .*00003.png"):
        check_training_data({"davis2017": videos}, None, False, logging.getLogger("tests"))


def test_mask_size_and_truncated_image(damaged):
    davis = os.path.join(damaged, "DAVIS")
    seq = "toy-val-00"
    cfg = toy_cfg(damaged)
    videos = davis2017_videos(davis, "val")
    video = [v for v in videos if v.name == seq][0]
    Image.new("P", (50, 40)).save(video.masks[0])
    one = Video(seq, video.images[:1] * 3, video.masks[:1] * 3)
    with pytest.raises(ValueError, match="00000.png is 50x40 but its frame .*00000.jpg is 216x120"):
        VideoTrainDataset([one], Sampling.from_config(cfg), 3)[0]
    data = open(video.images[1], "rb").read()
    open(video.images[1], "wb").write(data[: len(data) // 2])
    with pytest.raises(ValueError, match="truncated.*00001.jpg"):
        read_image(video.images[1])
    with pytest.raises(ValueError, match="00000.png is 50x40 but its frame .*00000.jpg is 216x120"):
        davis_sequences(davis, "2016")
    with pytest.raises(ValueError, match="00001.jpg"):
        list(VideoSegmenter(LSTA.from_config(small_cfg()), InferenceOptions(window=3)).segment(video.images[:3]))


def test_skip_bad_samples_option(damaged):
    davis = os.path.join(damaged, "DAVIS")
    good = davis2017_videos(davis)[0]
    broken = os.path.join(damaged, "broken.jpg")
    open(broken, "wb").write(b"not a jpeg")
    bad = Video("bad", [broken] * 4, good.masks[:4])
    cfg = toy_cfg(damaged)
    with pytest.raises(ValueError, match="broken.jpg"):
        VideoTrainDataset([bad, good], Sampling.from_config(cfg), 3)[(0, 0)]
    cfg.set("DATA_SKIP_BAD_SAMPLES", True)
    with pytest.warns(UserWarning, match="broken.jpg"):
        sample = VideoTrainDataset([bad, good], Sampling.from_config(cfg), 3)[(0, 0)]
    assert sample["meta"]["skipped_bad"] == 1 and sample["meta"]["video"] == good.name


def test_youtubevos_without_meta_json_warns_and_derives(damaged):
    ytb = os.path.join(damaged, "YTB", "train")
    with_meta = youtubevos_videos(ytb)
    os.remove(os.path.join(ytb, "meta.json"))
    with pytest.warns(UserWarning, match="meta.json not found"):
        derived = youtubevos_videos(ytb)
    assert [v.name for v in derived] == [v.name for v in with_meta]
    assert all(len(v.images) == 5 for v in derived)


# ---- DAVIS-2016 val ----

def test_eval_size_rule():
    assert eval_size(480, 854) == (481, 849)
    assert eval_size(1080, 1920) == (577, 1041)  # capped at 1040 first: 585x1040 → 16k+1
    assert eval_size(481, 849) == (481, 849)
    assert eval_size(120, 216) == (113, 209)


def test_davis2016_val_on_toy(toy_root):
    sequences = davis_sequences(os.path.join(toy_root, "DAVIS"), "2016")
    assert [s.name for s in sequences] == ["toy-val-00", "toy-val-01"]
    image = read_image(sequences[0].images[0])
    assert eval_preprocess(image).shape == (3, 113, 209) and image.shape[:2] == (120, 216)
    assert sequences[0].frame_names[0] == "00000"


def test_davis2016_release_layout(toy_root, tmp_path):
    # DAVIS-2016's own split file lists image/mask pairs.
    root = tmp_path / "davis16"
    shutil.copytree(os.path.join(toy_root, "DAVIS"), root)
    shutil.rmtree(root / "ImageSets" / "2016")
    (root / "ImageSets" / "480p").mkdir()
    (root / "ImageSets" / "480p" / "val.txt").write_text(
        "".join(f"/JPEGImages/480p/toy-val-01/{t:05d}.jpg /Annotations/480p/toy-val-01/{t:05d}.png\n" for t in range(3)))
    assert [s.name for s in davis_sequences(str(root), "2016")] == ["toy-val-01"]


def test_davis2016_val_on_real_sequences():
    root = shared_path("data", "davis16_sample")
    sequences = davis_sequences(root, "2016")
    assert len(sequences) == 2
    for seq in sequences:
        image = read_image(seq.images[0])
        assert image.shape[:2] == (480, 854) and eval_preprocess(image).shape == (3, 481, 849)
        assert len(seq.masks) == len(seq.images)


def test_normalisation_is_the_authors_bit_for_bit(toy_root):
    from dataloaders.transforms import normalise
    image = read_image(os.path.join(toy_root, "DAVIS/JPEGImages/480p/toy-val-00/00000.jpg")).astype(np.float32)
    # CFBI's ToTensor on a float32 BGR frame: in-place ops with float64 tuples, float32 storage.
    tmp = image / 255.
    tmp -= (0.485, 0.456, 0.406)
    tmp /= (0.229, 0.224, 0.225)
    ours = normalise(image)
    assert ours.dtype == torch.float32
    assert torch.equal(ours, torch.from_numpy(tmp.transpose((2, 0, 1)).copy()))
    # Channel order stays BGR: channel 0 is the image's first (blue) channel.
    blue = torch.from_numpy((image[..., 0] / 255 - 0.485) / 0.229).float()
    assert torch.allclose(ours[0], blue, atol=1e-6)


def test_broken_youtubevos_layouts_are_one_line(toy_root, tmp_path):
    ytb = tmp_path / "data" / "YTB" / "train"
    shutil.copytree(os.path.join(toy_root, "YTB", "train"), ytb)
    shutil.copytree(os.path.join(toy_root, "DAVIS"), tmp_path / "data" / "DAVIS")
    cfg = Config()
    cfg.apply_preset("toy")
    cfg.apply_opts(["DIR_DATA", str(tmp_path / "data"), "DIR_ROOT", str(tmp_path), "TRAIN_TOTAL_STEPS", "1",
                    "TRAIN_WARM_UP_STEPS", "0", "DATA_WORKERS", "0"])
    meta = json.loads((ytb / "meta.json").read_text())
    for broken in ({"no_videos": 1}, {"videos": []}, {"videos": {"v": {"objects": []}}}, "{not json"):
        (ytb / "meta.json").write_text(broken if isinstance(broken, str) else json.dumps(broken))
        assert train(cfg, CPU) == 1
        error = json.loads((tmp_path / "log" / "toy" / "summary.json").read_text())["error"]
        assert "meta.json" in error and "\n" not in error
    # Without meta.json the videos are listed from Annotations/, where a stray file is not a video.
    os.remove(ytb / "meta.json")
    (ytb / "Annotations" / "stray.txt").write_text("not a video")
    with pytest.warns(UserWarning, match="meta.json not found"):
        assert [v.name for v in youtubevos_videos(str(ytb))] == sorted(meta["videos"])
