import csv
import os

import cv2
import numpy as np
import pytest
import torch
from PIL import Image

from config import Config
from inference.window import WindowSchedule
from networks.lsta import LSTA
from networks.reference import authors_schedule
from tests.conftest import davis_j_mean
from tests.helpers.builders import TOY_EVAL
from tests.helpers.runs import EVAL_TOY, run_script
from utils.image_io import read_image


@pytest.mark.parametrize("frames,size,batch", [(9, 4, 1), (9, 4, 3), (3, 5, 2), (1, 3, 1), (4, 4, 4)])
def test_window_schedule_equals_the_authors(frames, size, batch):
    torch.manual_seed(frames + size)
    cfg = Config()
    cfg.set("MODEL_BACKBONE", "resnet18")
    model = LSTA.from_config(cfg).eval()
    images = torch.randn(frames, 3, 37, 45)
    with torch.inference_mode():
        feats = [model.encode(images[t:t + 1]) for t in range(frames)]
        expected = authors_schedule(model, feats, size)
        got = dict(_scheduled(model, images.split(batch), size))
    assert sorted(got) == list(range(frames))
    for t in range(frames):
        scale = expected[t].abs().max()
        assert (got[t] - expected[t]).abs().max() / scale < 1e-4, t


def _scheduled(model, batches, size):
    """(frame, logits) as VideoSegmenter runs the schedule: batches encoded, frames pushed one by one."""
    schedule = WindowSchedule(model, size)
    for batch in batches:
        for cache in model.cache_frames(model.encode(batch)).split():
            yield from schedule.push(cache)
    yield from schedule.finish()





def test_full_eval_on_toy_data(toy_root, toy_weights, tmp_path):
    out = run_script(*EVAL_TOY, "--ckpt_path", toy_weights, "--out", str(tmp_path / "res"),
                   "--opts", "DIR_DATA", toy_root, *TOY_EVAL)
    assert out.returncode == 0, out.stderr[-3000:]
    assert "J&F-Mean" in out.stdout and "FPS" in out.stdout and "encoder" in out.stdout
    davis = os.path.join(toy_root, "DAVIS")
    for seq in ("toy-val-00", "toy-val-01"):
        frames = sorted(os.listdir(os.path.join(davis, "JPEGImages/480p", seq)))
        masks = sorted(os.listdir(tmp_path / "res" / seq))
        assert masks == [f[:-4] + ".png" for f in frames]  # frame 0 included: it is predicted
        img = Image.open(tmp_path / "res" / seq / masks[0])
        assert img.mode == "P" and img.size == (216, 120)
        assert set(np.unique(np.array(img)).tolist()) <= {0, 1}
    with open(tmp_path / "res" / "global_results-val.csv") as f:
        rows = list(csv.DictReader(f))
    # J-Mean, computed here from the masks on disk: frames 1..n-2, mean per sequence, then over sequences.
    assert float(rows[0]["J-Mean"]) == pytest.approx(davis_j_mean(tmp_path / "res", davis, ["toy-val-00", "toy-val-01"]),
                                                    rel=1e-12)
    # Scoring alone gives the same figures.
    again = run_script("eval.py", "--score_only", str(tmp_path / "res"), "--opts", "DIR_DAVIS", davis)
    assert again.returncode == 0, again.stderr
    with open(tmp_path / "res" / "global_results-val.csv") as f:
        assert list(csv.DictReader(f)) == rows


def test_missing_checkpoint_is_a_clear_error(toy_root, tmp_path):
    out = run_script(*EVAL_TOY, "--ckpt_path", str(tmp_path / "best_LSTA.pth"), "--opts", "DIR_DATA", toy_root)
    assert out.returncode != 0 and "LSTA weights not found" in out.stderr and "best_LSTA.pth" in out.stderr


def test_own_video(toy_root, toy_weights, tmp_path):
    seq = os.path.join(toy_root, "DAVIS/JPEGImages/480p/toy-val-01")
    frames = [read_image(os.path.join(seq, f)) for f in sorted(os.listdir(seq))][:7]
    mp4 = str(tmp_path / "clip.mp4")
    writer = cv2.VideoWriter(mp4, cv2.VideoWriter_fourcc(*"mp4v"), 10, (216, 120))
    for frame in frames:
        writer.write(frame)
    writer.release()
    out = run_script(*EVAL_TOY, "--video", mp4, "--ckpt_path", toy_weights, "--out",
                   str(tmp_path / "own"), "--max_side", "160", "--opts", *TOY_EVAL)
    assert out.returncode == 0, out.stderr[-3000:]
    masks = sorted(os.listdir(tmp_path / "own" / "masks"))
    overlays = sorted(os.listdir(tmp_path / "own" / "overlays"))
    assert len(masks) == len(overlays) == 7
    assert Image.open(tmp_path / "own" / "masks" / masks[0]).size == (160, 89)  # shrunk to --max_side
    capture = cv2.VideoCapture(str(tmp_path / "own" / "overlay.mp4"))
    assert int(capture.get(cv2.CAP_PROP_FRAME_COUNT)) == 7
    capture.release()
    # The report beside it, and both places named in the output.
    report = tmp_path / "own" / "report"
    assert {"index.html", "area.png", "strip.png"} <= set(os.listdir(report))
    assert cv2.imread(str(report / "strip.png")) is not None
    printed = out.stdout + out.stderr
    assert str(report / "index.html") in printed and str(tmp_path / "own" / "overlay.mp4") in printed
    # A folder of frames works the same way.
    out = run_script(*EVAL_TOY, "--video", seq, "--ckpt_path", toy_weights, "--out",
                   str(tmp_path / "folder"), "--opts", *TOY_EVAL)
    assert out.returncode == 0, out.stderr[-3000:]
    assert len(os.listdir(tmp_path / "folder" / "masks")) == 12


def test_own_video_folder_with_mixed_frame_sizes_is_a_clear_error(toy_root, toy_weights, tmp_path):
    seq = os.path.join(toy_root, "DAVIS/JPEGImages/480p/toy-val-00")
    folder = tmp_path / "mixed"
    folder.mkdir()
    for i, name in enumerate(sorted(os.listdir(seq))[:6]):
        frame = read_image(os.path.join(seq, name))
        cv2.imwrite(str(folder / name), frame if i != 4 else frame[:100])
    out = run_script(*EVAL_TOY, "--video", str(folder), "--ckpt_path", toy_weights, "--out",
                   str(tmp_path / "o"), "--opts", *TOY_EVAL)
    assert out.returncode != 0 and "frame 4 of" in out.stderr and "one size" in out.stderr
