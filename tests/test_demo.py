"""demo.py's web page driven in headless Chromium: preview, expected time, progress from the first second,
Stop, a playable result, downloads named after the upload; bad input one line. The job itself without a page."""
import io
import json
import os
import re
import subprocess
import sys
import time
import zipfile

import cv2
import numpy as np
import pytest
from PIL import Image

from inference.demo_job import DemoJob
from inference.options import InferenceOptions
from inference.segmenter import VideoSegmenter
from networks.weights import load_lsta
from tests.conftest import ROOT
from tests.helpers.builders import preset_config
from tools.harness import free_port, wait_for_http
from utils.image_io import read_image

STATUS = "#status textarea"
FINISHED = "s => { const e = document.querySelector(s); return e && /^(done|error|damaged|stopped)/.test(e.value); }"


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
    assert "Traceback" not in open(root / "demo.log").read()  # no server traceback from any of these uses


def _open_with(page, url, video):
    page.goto(url)
    page.set_input_files("#upload input[type=file]", str(video))
    page.wait_for_timeout(500)  # the upload reaches the server before the click


def _segment(page, url, video):
    _open_with(page, url, video)
    page.click("#run")
    page.wait_for_function(FINISHED, arg=STATUS, timeout=240_000)
    return page.input_value(STATUS)


def _jobs(root):
    jobs = os.path.join(root, "log", "demo")
    return {n for n in os.listdir(jobs) if os.path.isfile(os.path.join(jobs, n, "job.json"))}


def _long_clip(toy_root, path, frames=400):
    """The toy clip's frames repeated into a video long enough to stop in the middle."""
    folder = os.path.join(toy_root, "DAVIS", "JPEGImages", "480p", "toy-val-00")
    images = [read_image(os.path.join(folder, n)) for n in sorted(os.listdir(folder))]
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 10, (images[0].shape[1], images[0].shape[0]))
    for t in range(frames):
        writer.write(images[t % len(images)])
    writer.release()
    return path


def test_preview_progress_result_and_downloads(demo_url, browser, toy_root, toy_weights, tmp_path):
    url, root = demo_url
    video = os.path.join(toy_root, "videos", "clip.avi")
    page = browser.new_page(viewport={"width": 1280, "height": 1000})
    _open_with(page, url, video)
    # Before starting: a playable preview and the expected time at the working size.
    page.wait_for_function("() => { const v = document.querySelector('#preview video'); "
                           "return v && v.readyState >= 2; }", timeout=60_000)
    page.wait_for_function("() => /about .* on this machine/.test(document.querySelector('#upload-info').innerText)",
                           timeout=30_000)
    assert "8 frames of 216×120" in page.inner_text("#upload-info")
    # Progress from the first second: every status seen names the total before the first overlay shows.
    page.evaluate("""() => { window.seen = []; const watch = () => {
        const s = document.querySelector('#status textarea'), o = document.querySelector('#overlay img');
        window.seen.push([s ? s.value : '', !!(o && o.naturalWidth)]); };
        window.timer = setInterval(watch, 20); }""")
    page.click("#run")
    page.wait_for_function(FINISHED, arg=STATUS, timeout=240_000)
    seen = page.evaluate("() => { clearInterval(window.timer); return window.seen; }")
    before_overlay = [s for s, shown in seen if s and not shown]
    assert before_overlay and all(" of 8" in s or s.startswith("reading") for s in before_overlay), before_overlay[:5]
    status = page.input_value(STATUS)
    count = int(re.match(r"done: (\d+) frames", status).group(1))
    # The result plays in the page.
    page.wait_for_function("() => { const v = document.querySelector('#result-video video'); "
                           "return v && v.readyState >= 2; }", timeout=60_000)
    page.eval_on_selector("#result-video video", "v => { v.muted = true; return v.play(); }")
    start = page.eval_on_selector("#result-video video", "v => v.currentTime")
    page.wait_for_timeout(600)
    assert page.eval_on_selector("#result-video video", "v => v.currentTime") > start
    # Downloads named after the upload; the masks as the API computes them.
    links = page.eval_on_selector_all("#downloads a", "els => els.map(e => e.href)")
    names = sorted(link.split("?")[0].rsplit("/", 1)[1] for link in links)
    assert names == ["clip_masks.zip", "clip_overlay.mp4", "clip_probabilities.zip"]
    masks_zip = next(link for link in links if link.split("?")[0].endswith("_masks.zip"))
    archive = zipfile.ZipFile(io.BytesIO(page.request.get(masks_zip).body()))
    pngs = sorted(n for n in archive.namelist() if n.endswith(".png"))
    model, _ = load_lsta(toy_weights, preset_config("toy"))
    expected = [f.mask for f in VideoSegmenter(model, InferenceOptions.from_config(preset_config("toy"))).segment(
        video, 320)]
    assert pngs == [f"clip/{i:05d}.png" for i in range(count)] and count == len(expected)
    for name, mask in zip(pngs, expected):
        assert np.array_equal(np.array(Image.open(archive.open(name))), mask), name
    job = os.path.join(root, "log", "demo", sorted(_jobs(root))[-1])
    assert json.load(open(os.path.join(job, "job.json")))["state"] == "done"
    page.screenshot(path=str(tmp_path / "demo.png"), full_page=True)


def test_stop_ends_the_job_and_keeps_what_was_finished(demo_url, browser, toy_root, tmp_path):
    url, root = demo_url
    video = _long_clip(toy_root, tmp_path / "long.avi")
    before = _jobs(root)
    page = browser.new_page()
    _open_with(page, url, video)
    page.click("#run")
    page.wait_for_function("s => { const e = document.querySelector(s); return e && /^segmenting: \\d+ of 400/"
                           ".test(e.value); }", arg=STATUS, timeout=120_000)
    pressed = time.perf_counter()
    page.click("#stop")
    page.wait_for_function(FINISHED, arg=STATUS, timeout=60_000)
    status = page.input_value(STATUS)
    assert status.startswith("stopped:") and time.perf_counter() - pressed < 30
    (job,) = _jobs(root) - before
    record = json.load(open(os.path.join(root, "log", "demo", job, "job.json")))
    assert record["state"] == "stopped" and 0 < record["frames_done"] < 400
    links = page.eval_on_selector_all("#downloads a", "els => els.map(e => e.href)")
    masks = zipfile.ZipFile(io.BytesIO(page.request.get(next(x for x in links if "_masks.zip" in x)).body()))
    assert len([n for n in masks.namelist() if n.endswith(".png")]) == record["frames_done"]


def test_damaged_and_wrong_files_get_one_line(demo_url, browser, toy_root, tmp_path):
    url, _ = demo_url
    data = open(os.path.join(toy_root, "videos", "clip.avi"), "rb").read()
    damaged = tmp_path / "damaged.avi"
    damaged.write_bytes(data[: len(data) * 2 // 3])  # the last third of the frames is gone
    page = browser.new_page()
    status = _segment(page, url, damaged)
    assert status.startswith("damaged file: kept the") and "\n" not in status
    assert 0 < int(re.search(r"kept the (\d+) frames", status).group(1))
    for name, data in (("not_a_video.mp4", os.urandom(4096)), ("locked.zip", _encrypted_zip())):
        (tmp_path / name).write_bytes(data)
        status = _segment(page, url, tmp_path / name)
        assert status.startswith("error: ") and name in status and "\n" not in status
        assert "/tmp" not in status and "gradio" not in status and "OpenCV" not in status


def _encrypted_zip() -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("clip/00000.png", b"\x89PNG not really")
    data = bytearray(buffer.getvalue())
    for signature, offset in ((b"PK\x03\x04", 6), (b"PK\x01\x02", 8)):
        at = data.find(signature)
        data[at + offset] |= 1  # the encrypted flag
    return bytes(data)


def test_two_uploads_at_once_run_one_after_the_other(demo_url, browser, toy_root):
    url, root = demo_url
    video = os.path.join(toy_root, "videos", "clip.avi")
    jobs, before = os.path.join(root, "log", "demo"), _jobs(root)
    pages = [browser.new_page(), browser.new_page()]
    for page in pages:
        _open_with(page, url, video)
    for page in pages:  # both pressed before either finishes
        page.click("#run")
    for page in pages:
        page.wait_for_function("s => { const e = document.querySelector(s); return e && /^done/.test(e.value); }",
                               arg=STATUS, timeout=240_000)
    new = sorted(_jobs(root) - before)
    assert len(new) == 2
    spans = []
    for job in new:
        masks = os.path.join(jobs, job, "masks", "clip")
        times = [os.stat(os.path.join(masks, n)).st_mtime_ns for n in os.listdir(masks)]
        spans.append((min(times), max(times)))
    (a_first, a_last), (b_first, b_last) = sorted(spans)
    assert a_last <= b_first  # the second job wrote nothing before the first had finished


# ---- the job without a page ----

@pytest.fixture(scope="module")
def segmenter(toy_weights):
    cfg = preset_config("toy")
    model, _ = load_lsta(toy_weights, cfg)
    return VideoSegmenter(model, InferenceOptions.from_config(cfg))


def _zip_of(path, frames: dict[str, np.ndarray]):
    with zipfile.ZipFile(path, "w") as archive:
        for name, image in frames.items():
            buffer = io.BytesIO()
            Image.fromarray(image).save(buffer, format="PNG")
            archive.writestr(name, buffer.getvalue())
    return str(path)


def _finish(segmenter, upload, jobs_dir):
    job = DemoJob(segmenter, upload, jobs_dir, 854)
    job.start()
    final = list(job.updates())[-1]
    job.join()
    return job, final


def test_a_zip_of_frames_is_read_flat_and_bad_frames_are_one_error(segmenter, tmp_path):
    jobs = str(tmp_path / "jobs")
    rng = np.random.RandomState(0)
    frames = {f"../../clip/{i:03d}.png": rng.randint(0, 255, (70, 90, 3), np.uint8) for i in range(5)}
    job, final = _finish(segmenter, _zip_of(tmp_path / "clip.zip", frames), jobs)
    assert final.frames == 5 and len(final.downloads) == 3 and job.state == "done"
    assert sorted(os.listdir(os.path.join(job.folder, "frames"))) == [f"{i:03d}.png" for i in range(5)]
    assert not (tmp_path / "clip").exists()
    mixed = dict(frames)
    mixed["clip/005.png"] = rng.randint(0, 255, (80, 90, 3), np.uint8)
    tiny = {"a.png": rng.randint(0, 255, (12, 12, 3), np.uint8)}
    (tmp_path / "empty.zip").write_bytes(b"not a zip")
    for upload, words in ((_zip_of(tmp_path / "mixed.zip", mixed), "all frames of a video must have one size"),
                          (_zip_of(tmp_path / "tiny.zip", tiny), "at least 29 pixels"),
                          (str(tmp_path / "empty.zip"), "not a readable zip")):
        job, final = _finish(segmenter, upload, jobs)
        assert job.state == "failed" and final.status.startswith("error: ") and words in final.status
        assert json.load(open(os.path.join(job.folder, "job.json")))["state"] == "failed"
