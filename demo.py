"""A web page to segment your own videos with LSTA, on this machine.

    python demo.py [--ckpt_path best_LSTA.pth] [--port 7860] [--host 127.0.0.1]
                   [--max_side 320] [--max_upload_mb 200] [--preset ... --opts ...]

Open the printed address, upload a video file or a zip of frames (or pick the toy clip), see its
preview and the expected time at the working size you choose, press Segment and watch the
progress and the overlays, Stop when you like, then play the overlay video, scrub through the
frames and download the masks (DAVIS layout, zip), the probability maps and the overlay video.
Results stay on disk under log/demo/. The page listens on 127.0.0.1 only, unless --host says
otherwise. The model is built as the checkpoint records it.
"""
from __future__ import annotations

import argparse
import logging
import os
import sys

from config import (
    MIN_FRAME_SIDE,
    ConfigError,
    add_config_args,
    config_error_lines,
    load_config,
)
from dataloaders.toy_data import ensure_toy_data
from inference.segmenter import VideoSegmenter
from inference.web_demo import DemoSettings, build_demo
from utils.errors import SettingError, UserError, user_message
from utils.logger import setup_logger


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_config_args(parser)
    parser.add_argument("--ckpt_path", default=None, help="LSTA weights (default: TEST_CKPT_PATH, else best_LSTA.pth)")
    parser.add_argument("--port", type=int, default=7860)
    parser.add_argument("--host", default="127.0.0.1", help="0.0.0.0 makes the page reachable from other machines")
    parser.add_argument("--max_side", type=int, default=None,
                        help="the working size the page opens with: frames shrunk to this longer side (default: 320 "
                             "on a CPU, where a 10-second clip then takes about a minute, 854 on a GPU; the page "
                             "offers 320, 480, 854 and the original)")
    parser.add_argument("--max_upload_mb", type=int, default=200, help="larger uploads are refused")
    args = parser.parse_args()
    try:
        cfg = load_config(args)
        args.max_side = args.max_side or (854 if cfg.DEVICE.startswith("cuda") else 320)
        check_arguments(args)
    except ConfigError as err:
        sys.exit(config_error_lines(err))
    except SettingError as err:
        sys.exit(f"error: {err}")
    setup_logger("demo", None, True)
    try:
        # The checkpoint's recorded settings (its window) apply as in eval.py (inference/checkpoint_settings.py).
        segmenter = VideoSegmenter.from_checkpoint(args.ckpt_path or cfg.TEST_CKPT_PATH or "best_LSTA.pth", cfg)
        clip = os.path.join(ensure_toy_data(os.path.join(cfg.DIR_ROOT, "data", "toy")), "videos", "clip.avi")
        settings = DemoSettings(args.max_side, args.max_upload_mb, os.path.join(cfg.DIR_ROOT, "log", "demo"), (clip,),
                                sizes=tuple(sorted({320, 480, 854, args.max_side})))
        os.makedirs(settings.jobs_dir, exist_ok=True)
        page = build_demo(segmenter, settings)
        page.launch(server_name=args.host, server_port=args.port, max_file_size=f"{args.max_upload_mb}mb",
                    allowed_paths=[os.path.abspath(settings.jobs_dir), os.path.abspath(os.path.dirname(clip))],
                    footer_links=[], quiet=False)
    except (UserError, OSError) as err:  # a missing checkpoint, a port in use, an unwritable folder: one line
        sys.exit(f"error: {user_message(err)}")


def check_arguments(args: argparse.Namespace) -> None:
    """One error for a command-line value the page cannot work with."""
    if args.max_upload_mb < 1:
        raise SettingError(f"--max_upload_mb {args.max_upload_mb}: must be at least 1")
    if args.max_side < MIN_FRAME_SIDE:
        raise SettingError(f"--max_side {args.max_side}: must be at least {MIN_FRAME_SIDE}, the smallest frame side "
                           f"the network accepts")
    if not 1 <= args.port <= 65535:
        raise SettingError(f"--port {args.port}: must be a TCP port, 1 to 65535")


if __name__ == "__main__":
    logging.captureWarnings(True)
    main()
