"""Time the demo page as a user sees it: from pressing Segment to the first overlay, and to the whole clip.

    python -m tools.bench_demo --ckpt_path log/toy/ckpt/save_step_300.pth [--video data/toy/videos/clip.avi]
                               [--preset toy] [--repeats 3] [--screenshot docs/demo.png]

Starts `demo.py` on a free port, drives it in headless Chromium (Debian's chromium, through
Playwright) and prints the median of each time over the repeats, with the frame count the page
reports. The first overlay can only come once the schedule predicts a frame: for a clip shorter
than the window (MODEL_MAX_MEM), that is after its last frame.
"""
from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time

from tools.harness import ROOT, free_port, launch_chromium, wait_for_http

DONE = "s => { const e = document.querySelector(s); return e && /^(done|error|damaged)/.test(e.value); }"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--ckpt_path", required=True)
    parser.add_argument("--video", default=os.path.join(ROOT, "data", "toy", "videos", "clip.avi"))
    parser.add_argument("--preset", default="toy")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--screenshot", default=None, help="save the finished page here (PNG)")
    args = parser.parse_args()
    from playwright.sync_api import sync_playwright
    port = free_port()
    url = f"http://127.0.0.1:{port}/"
    with tempfile.TemporaryDirectory() as root:
        server = subprocess.Popen([sys.executable, "demo.py", "--preset", args.preset, "--ckpt_path", args.ckpt_path,
                                   "--port", str(port), "--opts", "DIR_ROOT", root], cwd=ROOT,
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            if not wait_for_http(url, lambda: server.poll() is None, 300):
                raise SystemExit("error: demo.py did not start (run it by hand to see why)")
            with sync_playwright() as playwright:
                browser = launch_chromium(playwright)
                page = browser.new_page(viewport={"width": 1280, "height": 900})
                firsts, totals, status = [], [], ""
                for _ in range(args.repeats):
                    page.goto(url)
                    page.set_input_files("#upload input[type=file]", args.video)
                    page.wait_for_timeout(500)
                    start = time.perf_counter()
                    page.click("#run")
                    page.wait_for_function("() => { const i = document.querySelector('#overlay img');"
                                           " return i && i.naturalWidth > 0; }", timeout=600_000)
                    firsts.append(time.perf_counter() - start)
                    page.wait_for_function(DONE, arg="#status textarea", timeout=600_000)
                    totals.append(time.perf_counter() - start)
                    status = page.input_value("#status textarea")
                if args.screenshot:
                    page.wait_for_timeout(1500)  # the page fades its outputs while an event is pending
                    page.screenshot(path=args.screenshot)
                browser.close()
        finally:
            server.terminate()
            server.wait(timeout=30)
    print(f"page status: {status}")
    for what, seconds in (("first overlay", firsts), ("whole clip done", totals)):
        print(f"press Segment -> {what}: median {statistics.median(seconds):.2f} s "
              f"({', '.join(f'{t:.2f}' for t in seconds)})")


if __name__ == "__main__":
    main()
