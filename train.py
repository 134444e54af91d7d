"""Train LSTA: one process on CPU or one GPU, or many under torchrun.

    python train.py --preset stage1 [--exp_name NAME] [--opts KEY VALUE ...]
    torchrun --nproc_per_node 4 train.py --preset stage2
    bash train.sh              # both stages of the authors' recipe

Steps run 0..TRAIN_TOTAL_STEPS inclusive. The run folder log/<exp>/ holds the checkpoints
(ckpt/save_step_<N>.pth, written atomically, everything an exact resume needs), train.log,
config.json, run.json (the settings its checkpoints need, where it started from) and
summary.json (step, losses, timings, how it ended). Rerunning the same command resumes.

Exit status: 0 when the run has reached its final step; 3 when it stopped before (SIGINT,
SIGTERM, --stop_step) after saving a checkpoint to resume from; 1 on an error, reported as one
line on the console and in train.log (a bug keeps its traceback).
"""
from __future__ import annotations

import argparse
import sys

from config import ConfigError, add_config_args, config_error_lines, load_config
from training.launch import USER_ERRORS, train
from utils.distributed import cleanup, init_distributed
from utils.errors import user_message


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_config_args(parser)
    parser.add_argument("--stop_step", type=int, default=None,
                        help="save a checkpoint and stop after this step (time-limited jobs); rerun to resume")
    parser.add_argument("--restart", action="store_true",
                        help="set the run folder's earlier run aside (into log/<exp>/archive/) and start again")
    args = parser.parse_args()
    try:
        cfg = load_config(args)
    except ConfigError as err:
        print(config_error_lines(err), file=sys.stderr)
        return 1
    if args.print_config:
        print(cfg)
        return 0
    info = init_distributed(cfg.DEVICE, cfg.DEVICE_ID)
    try:
        return train(cfg, info, args.stop_step, args.restart)
    except USER_ERRORS as err:  # raised before the run's log exists (another run, other settings)
        print(f"error: {user_message(err)}", file=sys.stderr)
        return 1
    finally:
        cleanup()


if __name__ == "__main__":
    sys.exit(main())
