"""The one config loader of the entry points: --exp_name, --preset, --opts, --print_config."""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys

import torch

from config import Config
from utils.files import write_json


def add_config_args(parser: argparse.ArgumentParser) -> None:
    """Add the arguments every entry point shares."""
    parser.add_argument("--exp_name", default=None, help="run name (log/<exp_name>/)")
    parser.add_argument("--preset", default=None, help="named settings from config.PRESETS, e.g. toy, stage1")
    parser.add_argument("--opts", nargs="+", default=[], metavar="KEY VALUE",
                        help="override config keys: --opts TRAIN_LR 0.01 DATASETS \"['davis2017']\"")
    parser.add_argument("--print_config", action="store_true", help="print the resolved config as JSON and exit")


def load_config(args: argparse.Namespace) -> Config:
    """The validated Config for parsed arguments; prints it and exits on --print_config.

    A broken setting exits with one line per violation, each naming the key, its value and what
    is allowed.
    """
    cfg = Config()
    try:
        if args.preset:
            cfg.apply_preset(args.preset)
        if args.exp_name:
            cfg.set("EXP_NAME", args.exp_name)
        cfg.apply_opts(args.opts)
        cfg.validate()
    except (KeyError, TypeError, ValueError) as err:
        message = str(err.args[0] if err.args else err)
        sys.exit("\n".join(f"config error: {line}" for line in message.splitlines()))
    if args.print_config:
        print(json.dumps(cfg.to_dict(), indent=2, sort_keys=True))
        sys.exit(0)
    return cfg


def save_run_config(cfg: Config, path: str, **extra: str) -> None:
    """Write the resolved config with the command line, git commit, torch version, device and `extra`."""
    record = {**extra,
        "config": cfg.to_dict(),
        "command": " ".join([os.path.basename(sys.executable)] + sys.argv),
        "git_commit": _git_commit(),
        "torch": torch.__version__,
        "device": cfg.DEVICE,
        "device_name": torch.cuda.get_device_name(0) if cfg.DEVICE.startswith("cuda") else "cpu",
    }
    write_json(path, record)


def _git_commit() -> str | None:
    here = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=here, capture_output=True, text=True, timeout=5)
        return out.stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        return None
