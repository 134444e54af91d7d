"""Time the demo page as a user sees it: from pressing Segment to the first status line, the first overlay, done.

    python -m tools.bench_demo --ckpt_path log/toy/ckpt/save_step_300.pth [--preset toy] [--video FILE]
                               [--seconds 10] [--repeats 3] [--screenshots docs/demo]
    python -m tools.bench_demo --random_resnet101 --seconds 10 --repeats 1   # the released architecture's speed
    python -m tools.bench_demo --random_resnet101 --seconds 10 --repeats 1 --opts TEST_PRECISION int8

Starts `demo.py` on a free port, drives it in headless Chromium (Debian's chromium, through
Playwright) at the page's default working size, and prints the median of each time over the
repeats with the frame count and rate the page reports. `--seconds N` makes an N-second 854x480
clip at 25 frames/s (a synthetic pan) instead of `--video`; `--random_resnet101` serves ResNet-101
with random weights (the released model's cost, not its masks). `--screenshots PREFIX` saves the
page while it runs (PREFIX_running.png) and once it is done (PREFIX_done.png).
"""
from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time

import cv2
import numpy as np

from tools.harness import ROOT, free_port, launch_chromium, random_resnet101, wait_for_http

STATUS = "#status textarea"
DONE = "s => { const e = document.querySelector(s); return e && /^(done|error|damaged|stopped)/.test(e.value); }"
SHOWN = "s => { const e = document.querySelector(s); return e && e.value.length > 0; }"
OVERLAY = "() => { const i = document.querySelector('#overlay img'); return i && i.naturalWidth > 0; }"


def synthetic_clip(path: str, seconds: float, fps: int = 25) -> str:
    """An 854x480 MJPG clip of `seconds`: a smooth scene panning right."""
    base = cv2.resize(np.random.RandomState(0).randint(0, 255, (30, 54, 3)).astype(np.uint8), (854, 480))
    writer = cv2.VideoWriter(path, cv2.VideoWriter_fourcc(*"MJPG"), fps, (854, 480))
    for t in range(round(seconds * fps)):
        writer.write(np.roll(base, 4 * t, axis=1))
    writer.release()
    return path


def time_page(url: str, video: str, repeats: int, screenshots: str | None) -> tuple[dict[str, list[float]], str]:
    """Seconds from pressing Segment to the first status, the first overlay and done, per repeat; the last status."""
    from playwright.sync_api import sync_playwright
    times: dict[str, list[float]] = {"first status line": [], "first overlay": [], "done": []}
    with sync_playwright() as playwright:
        browser = launch_chromium(playwright)
        page = browser.new_page(viewport={"width": 1280, "height": 1000})
        for repeat in range(repeats):
            page.goto(url)
            page.set_input_files("#upload input[type=file]", video)
            page.wait_for_function("() => /frames/.test(document.querySelector('#upload-info').innerText)",
                                   timeout=600_000)
            start = time.perf_counter()
            page.click("#run")
            for what, condition, arg in (("first status line", SHOWN, STATUS), ("first overlay", OVERLAY, None)):
                page.wait_for_function(condition, arg=arg, timeout=3_600_000, polling=20)
                times[what].append(time.perf_counter() - start)
            if screenshots and repeat == repeats - 1:
                page.screenshot(path=f"{screenshots}_running.png")
            page.wait_for_function(DONE, arg=STATUS, timeout=3_600_000)
            times["done"].append(time.perf_counter() - start)
        status = page.input_value(STATUS)
        if screenshots:
            page.wait_for_timeout(1500)  # the player loads the overlay video
            page.screenshot(path=f"{screenshots}_done.png", full_page=True)
        browser.close()
    return times, status


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--ckpt_path", default=None, help="LSTA weights to serve")
    parser.add_argument("--random_resnet101", action="store_true", help="serve ResNet-101 with random weights")
    parser.add_argument("--video", default=os.path.join(ROOT, "data", "toy", "videos", "clip.avi"))
    parser.add_argument("--seconds", type=float, default=None, help="an 854x480 synthetic clip of this length instead")
    parser.add_argument("--preset", default=None)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--screenshots", default=None, help="save the page as PREFIX_running.png and PREFIX_done.png")
    parser.add_argument("--opts", nargs="*", default=[], help="settings for demo.py (e.g. TEST_PRECISION int8)")
    args = parser.parse_args()
    port = free_port()
    url = f"http://127.0.0.1:{port}/"
    with tempfile.TemporaryDirectory() as root:
        video = synthetic_clip(os.path.join(root, "clip.avi"), args.seconds) if args.seconds else args.video
        ckpt = random_resnet101(os.path.join(root, "r101.pth")) if args.random_resnet101 else args.ckpt_path
        if not ckpt:
            raise SystemExit("error: give --ckpt_path or --random_resnet101")
        command = [sys.executable, "demo.py", "--ckpt_path", ckpt, "--port", str(port), "--opts", "DIR_ROOT", root,
                   *args.opts]
        server = subprocess.Popen(command[:2] + (["--preset", args.preset] if args.preset else []) + command[2:],
                                  cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            if not wait_for_http(url, lambda: server.poll() is None, 600):
                raise SystemExit("error: demo.py did not start (run it by hand to see why)")
            times, status = time_page(url, video, args.repeats, args.screenshots)
        finally:
            server.terminate()
            server.wait(timeout=60)
    print(f"video: {os.path.basename(video)}{' with ' + ' '.join(args.opts) if args.opts else ''}; page status: "
          f"{status}")
    for what, seconds in times.items():
        print(f"press Segment -> {what}: median {statistics.median(seconds):.2f} s "
              f"({', '.join(f'{t:.2f}' for t in seconds)})")


if __name__ == "__main__":
    main()
