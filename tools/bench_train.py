"""Training-step speed and memory: the toy setting, and ResNet-101 at 465×465 (the authors' recipe).

    python -m tools.bench_train [--device cpu|cuda] [--steps 2] [--settings toy r101 r101-authors]

Each setting runs in its own process (so peak memory is its own) on the same toy-data batch:
  toy           the `toy` preset (ResNet-18, narrow head, encoder trained)
  r101          ResNet-101, 465×465, batch 1: the clean step (frozen encoder run without gradients)
  r101-authors  the same with the authors' step (backprop through the frozen encoder; the presets' step)
  r101-amp      r101 at the authors' global batch (TRAIN_BATCH_SIZE) with --amp (CUDA)
Distillation is off (no STM weights here); the encoder starts from random weights.
"""
from __future__ import annotations

import argparse
import json
import tempfile

import torch

from dataloaders.toy_data import ensure_toy_data
from tools.harness import run_cell

SETTINGS = {
    "toy": {"preset": "toy", "opts": {"DATA_WORKERS": 0}},
    "r101": {"preset": None, "opts": {"TRAIN_BATCH_SIZE": 1, "DATASETS": ["davis2017"],
                                      "TRAIN_AUTHORS_ENCODER_GRAD": False, "TRAIN_LOSS_LAST_FRAME_ONLY": False}},
    "r101-authors": {"preset": None, "opts": {"TRAIN_BATCH_SIZE": 1, "DATASETS": ["davis2017"],
                                              "TRAIN_AUTHORS_ENCODER_GRAD": True, "TRAIN_LOSS_LAST_FRAME_ONLY": True}},
    "r101-amp": {"preset": None, "opts": {"DATASETS": ["davis2017"], "TRAIN_AUTHORS_ENCODER_GRAD": False,
                                          "TRAIN_LOSS_LAST_FRAME_ONLY": False}},
}


def run_setting(name: str, data: str, device: str, steps: int, amp: str) -> dict:
    """Time `steps` train steps (after one warm-up) of one setting in this process."""
    from config import Config
    from dataloaders.loader import LoaderSettings, build_train_loader
    from dataloaders.train_datasets import build_train_dataset
    from training.build import build_trainer
    from utils.distributed import init_distributed
    from utils.logger import setup_logger
    from utils.timing import now, peak_memory_mb

    cfg = Config()
    if SETTINGS[name]["preset"]:
        cfg.apply_preset(SETTINGS[name]["preset"])
    for key, value in {"DIR_DATA": data, "DIR_ROOT": tempfile.mkdtemp(), "MODEL_DISTILLATION": False,
                       "PRETRAIN": False, "DATA_WORKERS": 0, "DEVICE": device,
                       "TRAIN_AMP": amp if name == "r101-amp" else "off",
                       **SETTINGS[name]["opts"]}.items():
        cfg.set(key, value)
    info = init_distributed(cfg.DEVICE, cfg.DEVICE_ID)
    parts = build_trainer(cfg, info, setup_logger("bench_train", None))
    loader, _ = build_train_loader(build_train_dataset(cfg), LoaderSettings.from_config(cfg), parts.rank_batch)
    batch = next(iter(loader))
    parts.step(batch, 100)
    if info.device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    start = now(info.device)
    for i in range(steps):
        parts.step(batch, 101 + i)
    seconds = (now(info.device) - start) / steps
    return {"setting": name, "device": str(info.device), "batch": cfg.TRAIN_BATCH_SIZE,
            "crop": list(cfg.DATA_RANDOMCROP), "frames": cfg.DATA_CURR_SEQ_LEN + 2, "amp": parts.amp,
            "backbone": cfg.MODEL_BACKBONE, "s_per_step": seconds,
            "samples_per_s": cfg.TRAIN_BATCH_SIZE / seconds, "peak_mb": peak_memory_mb(info.device)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--steps", type=int, default=2)
    parser.add_argument("--settings", nargs="+", default=["toy", "r101", "r101-authors"], choices=list(SETTINGS))
    parser.add_argument("--amp", default="bf16", help="precision of the r101-amp setting (bf16 | fp16 | off)")
    parser.add_argument("--data", default="data/toy")
    parser.add_argument("--one", default=None, help=argparse.SUPPRESS)  # internal: run one setting
    args = parser.parse_args()
    data = ensure_toy_data(args.data)
    if args.one:
        print(json.dumps(run_setting(args.one, data, args.device, args.steps, args.amp)))
        return
    results = {}
    print(f"torch {torch.__version__}, {torch.get_num_threads()} CPU threads, device {args.device}")
    for name in args.settings:
        try:
            r = run_cell("tools.bench_train", ["--one", name, "--data", data, "--device", args.device,
                                               "--steps", str(args.steps), "--amp", args.amp])
        except RuntimeError as err:
            print(f"{name}: failed\n{err}")
            continue
        results[name] = r
        print(f"{name:13s} {r['backbone']:9s} batch {r['batch']} crop {r['crop'][0]}x{r['crop'][1]} "
              f"{r['frames']} frames, AMP {r['amp']}: {r['s_per_step']:.3f} s/step, "
              f"{r['samples_per_s']:.2f} samples/s, {1 / r['s_per_step']:.2f} steps/s, peak {r['peak_mb']:.0f} MiB")
    if "r101" in results and "r101-authors" in results:
        ratio = results["r101"]["s_per_step"] / results["r101-authors"]["s_per_step"]
        memory = results["r101"]["peak_mb"] / results["r101-authors"]["peak_mb"]
        print(f"default step / authors' step (same data): {ratio:.2f} of the time "
              f"({1 / ratio:.2f}x faster), peak memory {memory:.2f}x")


if __name__ == "__main__":
    main()
