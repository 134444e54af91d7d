"""demo.py's web page driven in headless Chromium: upload, stream, download, refuse bad input."""
import io
import os
import re
import subprocess
import sys
import zipfile

import numpy as np
import pytest
from PIL import Image

from config import Config
from inference.segmenter import InferenceOptions, VideoSegmenter
from inference.web_demo import DemoSettings, segment_upload
from networks.weights import load_lsta
from tests.conftest import ROOT
from tools.harness import free_port, wait_for_http
from utils.errors import DataError

STATUS = "#status textarea"


@pytest.fixture(scope="module")
def demo_url(browser, toy_weights, tmp_path_factory):
    """demo.py serving the toy weights on a free port, as a user starts it."""
    root = tmp_path_factory.mktemp("demo")
    port = free_port()
    log = open(root / "demo.log", "w")
    server = subprocess.Popen([sys.executable, "demo.py", "--preset", "toy", "--ckpt_path", toy_weights, "--port",
                               str(port), "--opts", "DIR_ROOT", str(root)], cwd=ROOT, stdout=log, stderr=log)
    url = f"http://127.0.0.1:{port}/"
    if not wait_for_http(url, lambda: server.poll() is None, 180):
        server.kill()
        pytest.fail(f"demo.py did not start: {open(root / 'demo.log').read()[-2000:]}")
    yield url, root
    server.terminate()
    server.wait(timeout=30)
    log.close()


def _segment(page, url, video):
    page.goto(url)
    page.set_input_files("#upload input[type=file]", str(video))
    page.wait_for_timeout(500)  # the upload reaches the server before the click
    page.click("#run")
    page.wait_for_function("s => { const e = document.querySelector(s); return e && /^(done|error|damaged)/.test(e.value); }",
                           arg=STATUS, timeout=240_000)
    return page.input_value(STATUS)


def test_upload_streams_and_downloads_the_segmenters_masks(demo_url, browser, toy_root, toy_weights, tmp_path):
    url, _ = demo_url
    video = os.path.join(toy_root, "videos", "clip.avi")
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    status = _segment(page, url, video)
    count = int(re.match(r"done: (\d+) frames", status).group(1))
    cfg = Config()
    cfg.apply_preset("toy")
    model, _ = load_lsta(toy_weights, cfg)
    expected = [f.mask for f in VideoSegmenter(model, InferenceOptions.from_config(cfg)).segment(video, 854)]
    assert count == len(expected) > 0
    links = page.eval_on_selector_all("#downloads a", "els => els.map(e => e.href)")
    masks_zip = next(link for link in links if link.split("?")[0].endswith("_masks.zip"))
    archive = zipfile.ZipFile(io.BytesIO(page.request.get(masks_zip).body()))
    names = sorted(n for n in archive.namelist() if n.endswith(".png"))
    assert names == [f"clip/{i:05d}.png" for i in range(count)]
    for name, mask in zip(names, expected):
        assert np.array_equal(np.array(Image.open(archive.open(name))), mask), name
    assert page.eval_on_selector("#overlay img", "e => e.naturalWidth") > 0
    page.screenshot(path=str(tmp_path / "demo.png"), full_page=True)
    assert (tmp_path / "demo.png").stat().st_size > 0


def test_damaged_and_wrong_files_get_one_line(demo_url, browser, toy_root, tmp_path):
    url, _ = demo_url
    data = open(os.path.join(toy_root, "videos", "clip.avi"), "rb").read()
    damaged = tmp_path / "damaged.avi"
    damaged.write_bytes(data[: len(data) * 2 // 3])  # the last third of the frames is gone
    page = browser.new_page()
    status = _segment(page, url, damaged)
    assert status.startswith("damaged file: kept the") and "\n" not in status
    kept = int(re.search(r"kept the (\d+) frames", status).group(1))
    assert 0 < kept
    garbage = tmp_path / "not_a_video.mp4"
    garbage.write_bytes(os.urandom(4096))
    status = _segment(page, url, garbage)
    assert status.startswith("error: ") and "not_a_video.mp4" in status and "\n" not in status


@pytest.fixture(scope="module")
def segmenter(toy_weights):
    cfg = Config()
    cfg.apply_preset("toy")
    model, _ = load_lsta(toy_weights, cfg)
    return VideoSegmenter(model, InferenceOptions.from_config(cfg))


def _zip_of(path, frames: dict[str, np.ndarray]):
    with zipfile.ZipFile(path, "w") as archive:
        for name, image in frames.items():
            buffer = io.BytesIO()
            Image.fromarray(image).save(buffer, format="PNG")
            archive.writestr(name, buffer.getvalue())
    return str(path)


def test_a_zip_of_frames_is_read_flat_and_bad_frames_are_one_error(segmenter, tmp_path):
    settings = DemoSettings(jobs_dir=str(tmp_path / "jobs"))
    rng = np.random.RandomState(0)
    frames = {f"../../clip/{i:03d}.png": rng.randint(0, 255, (70, 90, 3), np.uint8) for i in range(5)}
    updates = list(segment_upload(segmenter, _zip_of(tmp_path / "clip.zip", frames), settings))
    final = updates[-1]
    assert final.frames == 5 and final.downloads
    job = os.path.dirname(final.downloads[0])
    assert sorted(os.listdir(os.path.join(job, "frames"))) == [f"{i:03d}.png" for i in range(5)]  # no path kept
    assert not (tmp_path / "clip").exists()
    mixed = dict(frames)
    mixed["clip/005.png"] = rng.randint(0, 255, (80, 90, 3), np.uint8)
    with pytest.raises(DataError, match="all frames of a video must have one size"):
        list(segment_upload(segmenter, _zip_of(tmp_path / "mixed.zip", mixed), settings))
    tiny = {"a.png": rng.randint(0, 255, (12, 12, 3), np.uint8)}
    with pytest.raises(DataError, match="at least 29 pixels"):
        list(segment_upload(segmenter, _zip_of(tmp_path / "tiny.zip", tiny), settings))
    (tmp_path / "empty.zip").write_bytes(b"not a zip")
    with pytest.raises(DataError, match="not a readable zip"):
        list(segment_upload(segmenter, str(tmp_path / "empty.zip"), settings))


def test_two_uploads_at_once_run_one_after_the_other(demo_url, browser, toy_root):
    url, root = demo_url
    video = os.path.join(toy_root, "videos", "clip.avi")
    jobs = os.path.join(root, "log", "demo")
    before = set(os.listdir(jobs))
    pages = [browser.new_page(), browser.new_page()]
    for page in pages:
        page.goto(url)
        page.set_input_files("#upload input[type=file]", video)
        page.wait_for_timeout(500)
    for page in pages:  # both pressed before either finishes
        page.click("#run")
    for page in pages:
        page.wait_for_function("s => { const e = document.querySelector(s); return e && /^done/.test(e.value); }",
                               arg=STATUS, timeout=240_000)
    new = sorted(set(os.listdir(jobs)) - before)
    assert len(new) == 2
    spans = []
    for job in new:
        masks = os.path.join(jobs, job, "masks", "clip")
        times = [os.stat(os.path.join(masks, n)).st_mtime_ns for n in os.listdir(masks)]
        spans.append((min(times), max(times)))
    (a_first, a_last), (b_first, b_last) = sorted(spans)
    assert a_last <= b_first  # the second job wrote nothing before the first had finished
