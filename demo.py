"""A web page to segment your own videos with LSTA, on this machine.

    python demo.py [--ckpt_path best_LSTA.pth] [--port 7860] [--host 127.0.0.1]
                   [--max_side 854] [--max_upload_mb 200] [--preset ... --opts ...]

Open the printed address, upload a video file or a zip of frames (or pick the toy clip), watch the
overlays stream in, scrub through the frames and download the masks (DAVIS layout, zip), the
probability maps and an overlay video. Results stay on disk under log/demo/. The page listens on
127.0.0.1 only, unless --host says otherwise. The model is built as the checkpoint records it.
"""
from __future__ import annotations

import argparse
import logging
import os
import sys

from config import ConfigError, add_config_args, config_error_lines, load_config
from inference.segmenter import VideoSegmenter
from inference.web_demo import DemoSettings, build_demo
from tools.make_toy_data import ensure_toy_data
from utils.errors import UserError, user_message
from utils.logger import setup_logger


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_config_args(parser)
    parser.add_argument("--ckpt_path", default=None, help="LSTA weights (default: TEST_CKPT_PATH, else best_LSTA.pth)")
    parser.add_argument("--port", type=int, default=7860)
    parser.add_argument("--host", default="127.0.0.1", help="0.0.0.0 makes the page reachable from other machines")
    parser.add_argument("--max_side", type=int, default=854, help="frames are shrunk to this longer side")
    parser.add_argument("--max_upload_mb", type=int, default=200, help="larger uploads are refused")
    args = parser.parse_args()
    try:
        cfg = load_config(args)
    except ConfigError as err:
        sys.exit(config_error_lines(err))
    setup_logger("demo", None, True)
    try:
        segmenter = VideoSegmenter.from_checkpoint(args.ckpt_path or cfg.TEST_CKPT_PATH or "best_LSTA.pth", cfg)
        clip = os.path.join(ensure_toy_data(os.path.join(cfg.DIR_ROOT, "data", "toy")), "videos", "clip.avi")
    except (UserError, OSError) as err:
        sys.exit(f"error: {user_message(err)}")
    settings = DemoSettings(args.max_side, args.max_upload_mb, os.path.join(cfg.DIR_ROOT, "log", "demo"), (clip,))
    os.makedirs(settings.jobs_dir, exist_ok=True)
    page = build_demo(segmenter, settings)
    page.launch(server_name=args.host, server_port=args.port, max_file_size=f"{args.max_upload_mb}mb",
                allowed_paths=[os.path.abspath(settings.jobs_dir), os.path.abspath(os.path.dirname(clip))],
                footer_links=[], quiet=False)


if __name__ == "__main__":
    logging.captureWarnings(True)
    main()
