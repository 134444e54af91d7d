"""Write the toy data: small synthetic videos in the layouts of the training sets and of every benchmark.

    python -m tools.make_toy_data --out data/toy [--seed N] [--height H --width W ...]

The data maker itself is dataloaders/toy_data.py (the tests and the demo use it too).
"""
from __future__ import annotations

import argparse

from dataloaders.toy_data import ToySpec, make_toy_data


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default="data/toy")
    parser.add_argument("--seed", type=int, default=0)
    defaults = ToySpec()
    for field, value in vars(defaults).items():
        parser.add_argument(f"--{field}", type=int, default=value)
    args = parser.parse_args()
    spec = ToySpec(**{k: getattr(args, k) for k in vars(defaults)})
    make_toy_data(args.out, args.seed, spec)
    print(f"toy data written to {args.out}: DAVIS {spec.davis_train}+{spec.davis_val} videos, "
          f"YouTube-VOS {spec.ytb_videos} videos, {spec.height}x{spec.width}")


if __name__ == "__main__":
    main()
