"""One checkpoint, one answer: eval.py --video, VideoSegmenter.from_checkpoint and the demo's segmenter write
byte-identical masks and probability maps for the same video, the checkpoint's recorded window included."""
import hashlib
import os

import numpy as np
import pytest
import torch
from PIL import Image

from config import Config
from inference.demo_job import DemoJob
from inference.segmenter import VideoSegmenter
from networks.checkpoints import save_lsta
from networks.lsta import LSTA
from tests.helpers.builders import preset_config
from tests.helpers.runs import run_script


@pytest.fixture(scope="module")
def recorded_checkpoint(tmp_path_factory):
    """A toy checkpoint whose record says MODEL_MAX_MEM 5 (the toy preset's window), as training writes it."""
    cfg = preset_config("toy").validate()
    torch.manual_seed(3)
    path = str(tmp_path_factory.mktemp("ckpt") / "save_step_300.pth")
    save_lsta(path, LSTA.from_config(cfg), step=300, config=cfg.to_dict())
    return path


def _pngs(folder) -> dict[str, bytes]:
    return {name: open(os.path.join(folder, name), "rb").read() for name in sorted(os.listdir(folder))}


def digest(files: dict[str, bytes]) -> str:
    """One SHA-256 over a folder's files, in name order (the closing note's figure)."""
    out = hashlib.sha256()
    for name, data in files.items():
        out.update(name.encode() + data)
    return out.hexdigest()


def test_eval_api_and_demo_write_the_same_masks(recorded_checkpoint, toy_root, tmp_path):
    video = os.path.join(toy_root, "videos", "clip.avi")
    # eval.py --video, as a user runs it (no preset: the checkpoint's record gives the window).
    out = run_script("eval.py", "--video", video, "--ckpt_path", recorded_checkpoint, "--out", str(tmp_path / "eval"),
                     "--save_probs", "--opts", "TEST_BACKEND", "torch")
    assert out.returncode == 0, out.stderr[-2000:]
    by_eval = _pngs(tmp_path / "eval" / "masks"), _pngs(tmp_path / "eval" / "probabilities")
    # The Python API, with the settings a user would pass.
    settings = Config()
    settings.TEST_BACKEND = "torch"
    api = VideoSegmenter.from_checkpoint(recorded_checkpoint, settings)
    assert api.window == 5  # the record's window, not the default 11
    frames = list(api.segment(video))
    # The demo's segmenter, built as demo.py builds it, on the same clip.
    demo = VideoSegmenter.from_checkpoint(recorded_checkpoint, settings)
    job = DemoJob(demo, video, str(tmp_path / "jobs"), 854)  # the page's default working size leaves it as it is
    job.start()
    list(job.updates())
    job = job.folder
    by_demo = _pngs(os.path.join(job, "masks", "clip")), _pngs(os.path.join(job, "probabilities", "clip"))
    assert by_eval[0] == by_demo[0] and by_eval[1] == by_demo[1]
    assert list(by_eval[0]) == [f"{f.name}.png" for f in frames] and len(frames) == 8
    for frame in frames:
        mask = np.array(Image.open(tmp_path / "eval" / "masks" / f"{frame.name}.png"))
        probability = np.array(Image.open(tmp_path / "eval" / "probabilities" / f"{frame.name}.png"))
        assert np.array_equal(mask, frame.mask)
        assert np.array_equal(probability, np.round(frame.probability * 255).astype(np.uint8))
    # The default window would have given other masks on this clip: the record matters here.
    settings.MODEL_MAX_MEM = 11
    other = [f.mask for f in VideoSegmenter.from_checkpoint(recorded_checkpoint, settings).segment(video)]
    assert any(not np.array_equal(a.mask, b) for a, b in zip(frames, other))
    print(f"masks digest: eval.py {digest(by_eval[0])[:16]}, demo {digest(by_demo[0])[:16]}; "
          f"probabilities: eval.py {digest(by_eval[1])[:16]}, demo {digest(by_demo[1])[:16]}")


def test_a_given_setting_wins_over_the_record(recorded_checkpoint):
    settings = Config()
    settings.set("MODEL_MAX_MEM", 7)
    settings.set("TEST_BACKEND", "torch")
    assert VideoSegmenter.from_checkpoint(recorded_checkpoint, settings).window == 7
    # The caller's settings are not changed by it.
    assert settings.MODEL_MAX_MEM == 7 and Config().MODEL_MAX_MEM == 11
