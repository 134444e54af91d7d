"""The one configuration of the project: every setting of training and evaluation.

Names follow the authors' `Configuration` (docs/training.md) so that their recipes
read the same here. Edit the defaults below, or override any key from the command line:

    python train.py --exp_name NAME --preset stage1 --opts TRAIN_LR 0.01 DATASETS "['davis2017']"

Paths marked "derived" follow DIR_ROOT / DIR_DATA / EXP_NAME unless set explicitly.
Constructing a Config has no side effects: it needs no CUDA and creates no folders.
"""
from __future__ import annotations

import argparse
import ast
import copy
import difflib
import json
import math
import os
import subprocess
import sys
from typing import Any, Callable

import torch

from utils.errors import SettingError
from utils.names import control_characters

# Keys whose default is computed from other keys; an explicit value (edit or --opts) wins.
_DERIVED: dict[str, Callable[["Config"], Any]] = {
    "DIR_DATA": lambda c: os.path.join(c.DIR_ROOT, "data"),
    "DIR_DAVIS": lambda c: os.path.join(c.DIR_DATA, "DAVIS"),
    "DIR_YTB": lambda c: os.path.join(c.DIR_DATA, "YTB", "train"),
    # Evaluation benchmarks (docs/evaluation.md for their layouts).
    "DIR_YTB_EVAL": lambda c: os.path.join(c.DIR_DATA, "YTB", "valid"),
    "DIR_FBMS": lambda c: os.path.join(c.DIR_DATA, "FBMS"),
    "DIR_YTO": lambda c: os.path.join(c.DIR_DATA, "YTO"),
    "DIR_LONGVIDEOS": lambda c: os.path.join(c.DIR_DATA, "LongVideos"),
    "DIR_SEGTRACKV2": lambda c: os.path.join(c.DIR_DATA, "SegTrackv2"),
    "DIR_VISAL": lambda c: os.path.join(c.DIR_DATA, "ViSal"),
    "DIR_DAVSOD": lambda c: os.path.join(c.DIR_DATA, "DAVSOD"),
    "DIR_RESULT": lambda c: os.path.join(c.DIR_ROOT, "log", c.EXP_NAME),
    "DIR_CKPT": lambda c: os.path.join(c.DIR_RESULT, "ckpt"),
    "DIR_TB_LOG": lambda c: os.path.join(c.DIR_RESULT, "tensorboard"),
    "DIR_EVALUATION": lambda c: os.path.join(c.DIR_RESULT, "eval"),
    "DIR_ONNX_CACHE": lambda c: os.path.join(c.DIR_ROOT, "pretrained", "onnx"),
    "DEVICE": lambda c: "cuda" if torch.cuda.is_available() else "cpu",
}

# Named groups of overrides, applied before --opts (`--preset NAME`).
PRESETS: dict[str, dict[str, Any]] = {
    # Stage 1 of the authors' recipe: DAVIS-2017 train, from the pretrained DeepLab, with their
    # training step (the last current frame's loss; the frozen encoder back-propagated through and
    # its never-zeroed gradients in the clipping norm: docs/training.md, "Two recipes").
    "stage1": {
        "EXP_NAME": "lsta_stage1",
        "DATASETS": ["davis2017"],
        "TRAIN_TOTAL_STEPS": 50000,
        "TRAIN_LOSS_LAST_FRAME_ONLY": True,
        "TRAIN_AUTHORS_ENCODER_GRAD": True,
    },
    # Stage 2: YouTube-VOS + DAVIS, initialised from stage 1's final weights, fresh optimiser.
    "stage2": {
        "EXP_NAME": "lsta_stage2",
        "DATASETS": ["youtubevos", "davis2017"],
        "TRAIN_TOTAL_STEPS": 25000,
        "PRETRAIN_MODEL": "./log/lsta_stage1/ckpt",  # its newest checkpoint
        "TRAIN_LOSS_LAST_FRAME_ONLY": True,
        "TRAIN_AUTHORS_ENCODER_GRAD": True,
    },
    # The corrected recipe (RECIPE=clean bash train.sh): every current frame's loss, the frozen
    # encoder run without gradients and left out of the clipping norm.
    "stage1_clean": {
        "EXP_NAME": "lsta_stage1_clean",
        "DATASETS": ["davis2017"],
        "TRAIN_TOTAL_STEPS": 50000,
        "TRAIN_LOSS_LAST_FRAME_ONLY": False,
        "TRAIN_AUTHORS_ENCODER_GRAD": False,
    },
    "stage2_clean": {
        "EXP_NAME": "lsta_stage2_clean",
        "DATASETS": ["youtubevos", "davis2017"],
        "TRAIN_TOTAL_STEPS": 25000,
        "PRETRAIN_MODEL": "./log/lsta_stage1_clean/ckpt",
        "TRAIN_LOSS_LAST_FRAME_ONLY": False,
        "TRAIN_AUTHORS_ENCODER_GRAD": False,
    },
    # A few CPU minutes on the toy data (dataloaders/toy_data.py): small backbone, trained whole.
    "toy": {
        "EXP_NAME": "toy",
        "DIR_DATA": "./data/toy",
        "DATASETS": ["davis2017", "youtubevos"],
        "MODEL_BACKBONE": "resnet18",
        "MODEL_TRAIN_ENCODER": True,
        "MODEL_FREEZE_BN": False,         # trained from scratch: BN statistics must be learnt
        "MODEL_ASPP_OUTDIM": 64,          # narrow decoder and head: CPU minutes, not hours
        "MODEL_SHORTCUT_DIM": 16,
        "MODEL_SEMANTIC_EMBEDDING_DIM": 32,
        "MODEL_DISTILLATION": False,
        "PRETRAIN": False,
        "TRAIN_LOSS_LAST_FRAME_ONLY": False,  # the clean step: every frame's loss (the encoder is trained anyway)
        "TRAIN_AUTHORS_ENCODER_GRAD": False,
        "TEST_BACKEND": "torch",          # exporting for onnxruntime (~16 s) costs more than a toy clip takes
        "DATA_RANDOMCROP": (113, 113),
        "DATA_SHORT_EDGE_LEN": 120,
        "DATA_CURR_SEQ_LEN": 3,
        "DATA_DAVIS_REPEAT": 25,
        "DATA_WORKERS": 1,
        "TRAIN_TOTAL_STEPS": 300,
        "TRAIN_WARM_UP_STEPS": 20,
        "TRAIN_LR": 0.02,
        "TRAIN_BATCH_SIZE": 4,
        "TRAIN_SAVE_STEP": 100,
        "TRAIN_LOG_STEP": 20,
        "MODEL_MAX_MEM": 5,
    },
}

# The settings a run folder's checkpoints depend on: resuming under other values would silently
# continue another experiment, so training refuses (see training/run_record.py).
FINGERPRINT_KEYS = (
    "MODEL_BACKBONE", "MODEL_OUTPUT_STRIDE", "MODEL_ASPP_OUTDIM", "MODEL_SHORTCUT_DIM",
    "MODEL_SEMANTIC_EMBEDDING_DIM", "MODEL_FREEZE_BN", "MODEL_TRAIN_ENCODER",
    "DATASETS", "DATA_SINGLE", "DATA_DAVIS_REPEAT", "DATA_CURR_SEQ_LEN", "DATA_RANDOMCROP",
    "TRAIN_BATCH_SIZE", "TRAIN_TOTAL_STEPS", "TRAIN_SEED",
)

# The smallest frame side the network accepts: STA's 8×8 patches need stride-4 features of at
# least 8 pixels, i.e. 4·7 + 1 input pixels.
MIN_FRAME_SIDE = 29
# Bounds that keep a typo from starting work no machine can finish: sizes the exported graphs
# accept (8192 sides, 64 frames a call), a window of 1000 frames, a few thousand samples a step.
MAX_SIDE, MAX_BATCH, MAX_WINDOW = 8192, 64, 1000
CACHE_CHANNELS = 48   # a frame's FrameCache: 16 + 16 + 16 channels at stride 4 (networks/lsta.py)
BACKBONES = ("resnet101", "resnet", "resnet50", "resnet34", "resnet18")
TRAIN_SETS = ("davis2017", "youtubevos")
TEST_SETS = ("davis2016", "davis2017", "fbms", "yto", "longvideos", "segtrackv2", "visal", "davsod", "youtubevos")


def _int_at_least(low: int) -> tuple[Callable[[Any], bool], str]:
    return (lambda v: isinstance(v, int) and not isinstance(v, bool) and v >= low), f"an integer ≥ {low}"


def _int_in(low: int, high: int) -> tuple[Callable[[Any], bool], str]:
    return ((lambda v: isinstance(v, int) and not isinstance(v, bool) and low <= v <= high),
            f"an integer in [{low}, {high}]")


def _number_in(low: float, high: float, low_open: bool = False) -> tuple[Callable[[Any], bool], str]:
    def check(v: Any) -> bool:
        return (isinstance(v, (int, float)) and not isinstance(v, bool)
                and (low < v if low_open else low <= v) and v <= high)
    return check, f"a number in {'(' if low_open else '['}{low}, {high}]"


def _one_of(*choices: Any) -> tuple[Callable[[Any], bool], str]:
    return (lambda v: v in choices), "one of " + ", ".join(map(repr, choices))


class _Registered:
    """The names a registry holds, read when a value is checked (the registries import config themselves)."""

    def __init__(self, names: Callable[[], tuple[str, ...]]) -> None:
        self.names = names

    def rule(self) -> tuple[Callable[[Any], bool], "_Registered"]:
        return (lambda v: v in self.names()), self

    def __format__(self, spec: str) -> str:
        return "one of " + ", ".join(map(repr, self.names()))


def _backend_names() -> tuple[str, ...]:
    from inference.backends import backend_names  # the registry of inference backends
    return backend_names()


def _extra_loss_names() -> tuple[str, ...]:
    from training.losses import loss_names  # the registry; ohem and distillation are always there
    return tuple(name for name in loss_names() if name not in ("ohem", "distillation"))


def _crop(v: Any) -> bool:
    return (isinstance(v, (list, tuple)) and len(v) == 2
            and all(isinstance(x, int) and not isinstance(x, bool) and MIN_FRAME_SIDE <= x <= MAX_SIDE for x in v))


def _finite_in(low: float, high: float, low_open: bool = False) -> tuple[Callable[[Any], bool], str]:
    check, text = _number_in(low, high, low_open)
    return (lambda v: check(v) and math.isfinite(v)), text.replace(", inf]", ", ∞), finite")


def _flag() -> tuple[Callable[[Any], bool], str]:
    return (lambda v: isinstance(v, bool)), "True or False"


def _text(empty_ok: bool = False) -> tuple[Callable[[Any], bool], str]:
    return (lambda v: isinstance(v, str) and (empty_ok or bool(v))), "a string" if empty_ok else "a non-empty string"


def _plain_name(v: Any) -> bool:
    """A folder name, not a path: no separators, not '.' or '..', no control characters (newline, tab, NUL...)."""
    return (isinstance(v, str) and bool(v) and v not in (".", "..") and "/" not in v and "\\" not in v
            and not control_characters(v))


INF = float("inf")
# What each key allows. Every key has a rule, so that a value edited into this file is checked
# as strictly as one given with --opts. Relations between keys follow in _relations();
# Config.validate() applies both.
RULES: dict[str, tuple[Callable[[Any], bool], str]] = {
    "EXP_NAME": (_plain_name, "a plain folder name (no slashes or control characters, not . or ..)"),
    "DEVICE": (lambda v: isinstance(v, str) and (v == "cpu" or v == "cuda" or (v.startswith("cuda:") and v[5:].isdigit())),
               "cpu, cuda or cuda:N"),
    "DEVICE_ID": _int_at_least(0),
    "MODEL_BACKBONE": _one_of(*BACKBONES),
    "MODEL_OUTPUT_STRIDE": _one_of(16),
    "MODEL_ASPP_OUTDIM": _int_at_least(1),
    "MODEL_SHORTCUT_DIM": _int_at_least(1),
    "MODEL_SEMANTIC_EMBEDDING_DIM": _int_at_least(1),
    # The query, the STA frame and at least one long-memory frame.
    "MODEL_MAX_MEM": _int_in(3, MAX_WINDOW),
    "TRAIN_DISTILLATION_LOSS_WEIGHT": _number_in(0, 1),
    "DATASETS": (lambda v: bool(v) and len(set(v)) == len(v) and all(d in TRAIN_SETS for d in v),
                 "a non-empty list of distinct names from " + ", ".join(TRAIN_SETS)),
    "DATA_WORKERS": _int_in(0, 256),
    "DATA_RANDOMCROP": (_crop, f"(height, width), integers in [{MIN_FRAME_SIDE}, {MAX_SIDE}] ({MIN_FRAME_SIDE}: the "
                               f"smallest the network accepts)"),
    "DATA_RANDOMFLIP": _number_in(0, 1),
    "DATA_MAX_CROP_STEPS": _int_at_least(1),
    "DATA_MIN_SCALE_FACTOR": _finite_in(0, INF, low_open=True),
    "DATA_MAX_SCALE_FACTOR": _finite_in(0, INF, low_open=True),
    "DATA_SHORT_EDGE_LEN": _int_in(1, MAX_SIDE),
    "DATA_DAVIS_REPEAT": _int_at_least(1),
    "DATA_CURR_SEQ_LEN": _int_in(1, 100),
    "DATA_RANDOM_GAP_DAVIS": _int_at_least(1),
    "DATA_RANDOM_GAP_YTB": _int_at_least(1),
    "TRAIN_TOTAL_STEPS": _int_at_least(1),
    "TRAIN_START_STEP": _int_at_least(0),
    "TRAIN_LR": _finite_in(0, INF, low_open=True),
    "TRAIN_MOMENTUM": _number_in(0, 1),
    "TRAIN_WARM_UP_STEPS": _int_at_least(0),
    "TRAIN_WEIGHT_DECAY": _finite_in(0, INF),
    "TRAIN_POWER": _finite_in(0, INF, low_open=True),
    "TRAIN_MIN_LR": _finite_in(0, INF),
    "TRAIN_GPUS": _int_at_least(0),
    "TRAIN_BATCH_SIZE": _int_in(1, 4096),
    "TRAIN_MAX_BATCH_PER_PASS": _int_in(0, 4096),
    "TRAIN_CLIP_GRAD_NORM": _finite_in(0, INF, low_open=True),
    "TRAIN_AMP": _one_of("off", "bf16", "fp16"),
    "TRAIN_SEED": (lambda v: isinstance(v, int) and 0 <= v < 2**32, "an integer in [0, 2**32)"),
    "TRAIN_MAX_NONFINITE": _int_at_least(1),
    "TRAIN_LOG_STEP": _int_at_least(1),
    "TRAIN_TBLOG_STEP": _int_at_least(1),
    "TRAIN_SAVE_STEP": _int_at_least(1),
    "TRAIN_MAX_KEEP_CKPT": _int_at_least(1),
    "TEST_DATASET": _one_of(*TEST_SETS),
    "TEST_MAX_SIZE": _int_in(MIN_FRAME_SIDE, MAX_SIDE),
    "TEST_MULTISCALE": (lambda v: 0 < len(v) <= 8 and all(isinstance(x, (int, float)) and not isinstance(x, bool)
                                                         and 0.25 <= x <= 4 for x in v),
                        "a list of 1 to 8 scales in [0.25, 4]"),
    "TEST_ENCODE_BATCH": _int_in(0, MAX_BATCH),
    "TEST_VIDEOS_IN_FLIGHT": _int_in(0, 64),
    "PRETRAIN_PARTIAL_ENCODER": _one_of("error", "train"),
    "TEST_PRECISION": _one_of("float32", "tf32", "bf16", "fp16", "int8"),
    "TEST_BACKEND": _Registered(_backend_names).rule(),
    "TRAIN_EXTRA_LOSSES": (lambda v: isinstance(v, dict) and all(
        k in _extra_loss_names() and isinstance(w, (int, float)) and not isinstance(w, bool) and math.isfinite(w)
        for k, w in v.items()), _Registered(_extra_loss_names)),
    "TEST_COMPILE": _one_of(False, True, "cudagraphs"),
    "TEST_DATASET_SPLIT": (_plain_name, "a split name (val, test, ...), not a path"),
    **{key: _flag() for key in (
        "DATA_RANDOM_REVERSE_SEQ", "DATA_SINGLE", "DATA_SKIP_BAD_SAMPLES", "DEVICE_ALLOW_TF32", "MODEL_DISTILLATION",
        "MODEL_FREEZE_BN", "MODEL_TRAIN_ENCODER", "PRETRAIN", "TEST_COPY_FIRST_FRAME_GT", "TEST_DATASET_FULL_RESOLUTION",
        "TEST_CHANNELS_LAST", "TEST_FLIP", "TRAIN_AUTHORS_ENCODER_GRAD", "TRAIN_AUTO_RESUME",
        "TRAIN_CHANNELS_LAST", "TRAIN_COSINE_DECAY",
        "TRAIN_DATASET_FULL_RESOLUTION", "TRAIN_DISTILLATION_TEACHER_AS_DESIGNED", "TRAIN_LOSS_LAST_FRAME_ONLY",
        "TRAIN_TBLOG")},
    # Paths: any non-empty string (TEST_CKPT_PATH may be empty: the newest checkpoint of EXP_NAME).
    **{key: _text() for key in (
        "DIR_CKPT", "DIR_DATA", "DIR_DAVIS", "DIR_DAVSOD", "DIR_EVALUATION", "DIR_FBMS", "DIR_LONGVIDEOS",
        "DIR_ONNX_CACHE", "DIR_RESULT", "DIR_ROOT", "DIR_SEGTRACKV2", "DIR_TB_LOG", "DIR_VISAL", "DIR_YTB",
        "DIR_YTB_EVAL", "DIR_YTO",
        "MODEL_DISTILLATION_PRETRAINED_TEACHER", "PRETRAIN_MODEL")},
    "TEST_CKPT_PATH": _text(empty_ok=True),
    "TEST_INT8_CALIBRATION": _text(empty_ok=True),
}


def _relations(cfg: "Config") -> list[tuple[str, str]]:
    """(key, message) for every violated relation between keys."""
    problems = []
    if cfg.DATA_MAX_SCALE_FACTOR < cfg.DATA_MIN_SCALE_FACTOR:
        problems.append(("DATA_MAX_SCALE_FACTOR", f"must be ≥ DATA_MIN_SCALE_FACTOR {cfg.DATA_MIN_SCALE_FACTOR}"))
    if cfg.TRAIN_START_STEP > cfg.TRAIN_TOTAL_STEPS:
        problems.append(("TRAIN_START_STEP", f"must be ≤ TRAIN_TOTAL_STEPS {cfg.TRAIN_TOTAL_STEPS}"))
    if cfg.TRAIN_WARM_UP_STEPS > cfg.TRAIN_TOTAL_STEPS:
        problems.append(("TRAIN_WARM_UP_STEPS", f"must be ≤ TRAIN_TOTAL_STEPS {cfg.TRAIN_TOTAL_STEPS}"))
    if cfg.TRAIN_MIN_LR > cfg.TRAIN_LR:
        problems.append(("TRAIN_MIN_LR", f"must be ≤ TRAIN_LR {cfg.TRAIN_LR}"))
    if cfg.DEVICE.startswith("cuda") and not torch.cuda.is_available():
        problems.append(("DEVICE", "needs a CUDA GPU, and none is visible (torch.cuda.is_available() is False); "
                                   "use cpu"))
    need, have = inference_memory_estimate(cfg), physical_memory()
    if have and need > have:
        problems.append(("MODEL_MAX_MEM", f"with TEST_MAX_SIZE {cfg.TEST_MAX_SIZE}, TEST_MULTISCALE "
                                          f"{list(cfg.TEST_MULTISCALE)} and TEST_FLIP {cfg.TEST_FLIP} the window alone "
                                          f"needs ~{need / 2 ** 30:.0f} GiB, more than this machine's "
                                          f"{have / 2 ** 30:.0f} GiB: lower MODEL_MAX_MEM or TEST_MAX_SIZE"))
    if cfg.TEST_COMPILE == "cudagraphs" and not cfg.DEVICE.startswith("cuda"):
        problems.append(("TEST_COMPILE", f"cudagraphs replays CUDA graphs: it needs DEVICE cuda, not {cfg.DEVICE}; "
                                         f"use True"))
    return problems


def inference_memory_estimate(cfg: "Config") -> int:
    """Bytes a full inference window holds at worst: MODEL_MAX_MEM caches per view, square frames of TEST_MAX_SIZE."""
    views = 2 if cfg.TEST_FLIP else 1
    per_frame = sum(CACHE_CHANNELS * 4 * (math.ceil(cfg.TEST_MAX_SIZE * scale / 4) + 1) ** 2
                    for scale in cfg.TEST_MULTISCALE)
    return int(cfg.MODEL_MAX_MEM * views * per_frame)


def physical_memory() -> int | None:
    """This machine's memory in bytes, where the system says (None elsewhere)."""
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (AttributeError, ValueError, OSError):
        return None


class ConfigError(SettingError):
    """Settings that break a rule; one line per violation, each naming the key, its value and what is allowed."""


class Config:
    """Every setting of the project; `Config()` gives the authors' defaults (released weights)."""

    def __init__(self) -> None:
        self._given: set[str] = set()         # keys set after construction: presets, --opts, code (see given())
        self._frozen = False                  # True once an entry point has validated them (see freeze())
        # ---- experiment and folders ----
        self.EXP_NAME = "lsta_r101"           # run name: results under log/EXP_NAME
        self.DIR_ROOT = "./"                  # project root; derived paths hang below it
        self.DEVICE_ID = 0                    # GPU of a single-process run (torchrun ranks use LOCAL_RANK)
        self.DEVICE_ALLOW_TF32 = False        # True: TF32 convolutions and matmuls on CUDA (faster, ~1e-3 relative error)

        # ---- model ----
        self.MODEL_BACKBONE = "resnet101"     # resnet101 (released weights) | resnet50 | resnet18 | resnet34
        self.MODEL_OUTPUT_STRIDE = 16
        self.MODEL_ASPP_OUTDIM = 256
        self.MODEL_SHORTCUT_DIM = 48
        self.MODEL_SEMANTIC_EMBEDDING_DIM = 128  # refine head width
        self.MODEL_FREEZE_BN = True           # frozen BatchNorm in the encoder
        self.MODEL_MAX_MEM = 11               # inference window: query + MODEL_MAX_MEM-1 memory frames
        self.MODEL_TRAIN_ENCODER = False      # True: the encoder is optimised too (toy preset)
        self.MODEL_DISTILLATION = True        # distil from the STM teacher
        self.MODEL_DISTILLATION_PRETRAINED_TEACHER = "./pretrained/STM_weights.pth"
        self.PRETRAIN = True                  # initialise the encoder from PRETRAIN_MODEL
        self.PRETRAIN_MODEL = "./pretrained/resnet101-deeplabv3p.pth.tar"
        # Encoder parts PRETRAIN_MODEL leaves uninitialised (a backbone-only file leaves ASPP and
        # decoder): "error" stops naming them; "train" trains them with the head.
        self.PRETRAIN_PARTIAL_ENCODER = "error"

        # ---- training data ----
        self.DATASETS = ["youtubevos", "davis2017"]
        self.DATA_WORKERS = 4                 # loader workers per process
        self.DATA_RANDOMCROP = (465, 465)     # training crop (h, w)
        self.DATA_RANDOMFLIP = 0.5
        self.DATA_MAX_CROP_STEPS = 5
        self.DATA_MIN_SCALE_FACTOR = 0.7
        self.DATA_MAX_SCALE_FACTOR = 1.3
        self.DATA_SHORT_EDGE_LEN = 480
        self.DATA_RANDOM_REVERSE_SEQ = True
        self.DATA_DAVIS_REPEAT = 30
        self.DATA_CURR_SEQ_LEN = 5            # current frames per sample (+ reference + previous)
        self.DATA_RANDOM_GAP_DAVIS = 3
        self.DATA_RANDOM_GAP_YTB = 3
        self.DATA_SINGLE = False              # YouTube-VOS: single-object videos only
        self.DATA_SKIP_BAD_SAMPLES = False    # True: warn and skip unreadable samples
        self.TRAIN_DATASET_FULL_RESOLUTION = True  # DAVIS: Full-Resolution frames when present

        # ---- optimisation ----
        self.TRAIN_TOTAL_STEPS = 50000        # steps 0..TOTAL inclusive, as the authors run them
        self.TRAIN_START_STEP = 0
        self.TRAIN_LR = 6e-3
        self.TRAIN_MOMENTUM = 0.9
        self.TRAIN_COSINE_DECAY = False
        self.TRAIN_WARM_UP_STEPS = 1000
        self.TRAIN_WEIGHT_DECAY = 1.5e-4
        self.TRAIN_POWER = 0.9
        self.TRAIN_MIN_LR = 1e-5
        self.TRAIN_GPUS = 0                   # processes train.sh starts per node (0: all visible GPUs)
        self.TRAIN_BATCH_SIZE = 2             # global batch, split over ranks
        self.TRAIN_MAX_BATCH_PER_PASS = 0     # >0: gradient accumulation in passes of this size
        self.TRAIN_CLIP_GRAD_NORM = 5.0
        # The authors' training step (their code's; we infer the released weights were trained so); False/False
        # is the clean recipe (presets stage1_clean, stage2_clean; docs/training.md, "Two recipes").
        self.TRAIN_LOSS_LAST_FRAME_ONLY = True    # True: only the last current frame's loss, 2·loss_T/T
        self.TRAIN_AUTHORS_ENCODER_GRAD = True    # True: backprop through the frozen encoder; its never-zeroed
                                                  # gradients enter the clipping norm
        self.TRAIN_DISTILLATION_LOSS_WEIGHT = 0.1   # with MODEL_DISTILLATION: frame loss = (1-w)*OHEM + w*KD
        self.TRAIN_DISTILLATION_TEACHER_AS_DESIGNED = False  # True: teacher gets [0,1] RGB, binary mask, eval mode
        self.TRAIN_EXTRA_LOSSES = {}          # more losses of training.losses.LOSSES: name → weight, added in
        self.TRAIN_AMP = "off"                # off | bf16 | fp16 autocast (fp16 with a grad scaler); slow on CPU
        self.TRAIN_CHANNELS_LAST = False
        self.TRAIN_SEED = 0
        self.TRAIN_MAX_NONFINITE = 10         # consecutive non-finite losses before stopping

        # ---- logging and checkpoints ----
        self.TRAIN_LOG_STEP = 20
        self.TRAIN_TBLOG = False
        self.TRAIN_TBLOG_STEP = 20
        self.TRAIN_SAVE_STEP = 1000
        self.TRAIN_MAX_KEEP_CKPT = 100
        self.TRAIN_AUTO_RESUME = True

        # ---- evaluation ----
        self.TEST_DATASET = "davis2016"       # benchmark of eval.py (--dataset); see TEST_SETS
        self.TEST_DATASET_SPLIT = "val"
        self.TEST_DATASET_FULL_RESOLUTION = False
        self.TEST_CKPT_PATH = ""              # weights to evaluate; "": the newest checkpoint of EXP_NAME
        self.TEST_MAX_SIZE = 1040             # long-edge cap at test time (800 * 1.3)
        self.TEST_FLIP = False                # True: also segment the mirrored video, average the probabilities
        self.TEST_MULTISCALE = [1.0]          # frame scales to segment at and average ([1.0]: the authors')
        self.TEST_ENCODE_BATCH = 0            # frames per encoder call; 0: 4 on GPU, 1 on CPU (fastest there)
        # Videos eval.py segments at once, their frames of one size encoded together (each video keeps
        # its own window): 0 = 4 on GPU, where they fill the encoder's batches, 1 on CPU.
        self.TEST_VIDEOS_IN_FLIGHT = 0
        self.TEST_COPY_FIRST_FRAME_GT = False  # True: the authors' copy of frame 0's ground truth
        self.TEST_PRECISION = "float32"       # float32 | tf32 (CUDA) | bf16 | fp16 (autocast) | int8 (onnxruntime, CPU)
        # int8's calibration frames: "" = the first frames of what is segmented (a benchmark's first
        # sequence, the video), or a folder of frames; docs/evaluation.md, "int8".
        self.TEST_INT8_CALIBRATION = ""
        # Who runs the encoder and the head: torch | onnxruntime (CPU, float32 or int8; exported once per
        # checkpoint into DIR_ONNX_CACHE) | auto: onnxruntime on a CPU in float32 and int8, where it is the
        # faster, torch elsewhere.
        self.TEST_BACKEND = "auto"
        # True: torch.compile the encoder and the inference step (LTM, STA, refine head; torch backend).
        # Each new frame size compiles once (30-60 s on a 2-core CPU), so it pays off on long runs of
        # one size, mostly on GPUs. "cudagraphs" (GPU only): also replay each as a CUDA graph, which
        # saves the launch of each of a frame's ~400 small GPU operations.
        self.TEST_COMPILE = False
        self.TEST_CHANNELS_LAST = False       # True: encoder and head in channels-last layout (torch backend)
        self._ready = True                    # from here on, an assigned key counts as given

    def __setattr__(self, name: str, value: Any) -> None:
        # Every key assigned after __init__ counts as given, also `cfg.MODEL_MAX_MEM = 7` in a user's code.
        if name.isupper() and "_ready" in vars(self):
            if self._frozen:
                raise SettingError(f"{name}: these settings were validated and are read-only now; copy() them "
                                   f"to change a key")
            self._given.add(name)
        object.__setattr__(self, name, value)

    def __getattr__(self, name: str) -> Any:
        # Called only when `name` is not set on the instance: derived keys are computed here.
        if name in _DERIVED:
            return _DERIVED[name](self)
        raise AttributeError(f"Config has no key {name!r}{_suggest(name, self.keys())}")

    def keys(self) -> list[str]:
        """All setting names, explicit and derived."""
        return sorted(set(k for k in vars(self) if k.isupper()) | set(_DERIVED))

    def to_dict(self) -> dict[str, Any]:
        """The resolved settings as a JSON-friendly dict."""
        return {k: _jsonable(getattr(self, k)) for k in self.keys()}

    def set(self, key: str, value: Any) -> None:
        """Set one key, converting `value` to the default's type where that is lossless."""
        if key not in self.keys():
            raise KeyError(f"unknown config key {key!r}{_suggest(key, self.keys())}")
        current = getattr(self, key)
        setattr(self, key, _convert(key, value, current))

    def given(self, key: str) -> bool:
        """Whether `key` was set by a preset, --opts or code rather than left at this file's value."""
        return key in self._given

    def adopt(self, recorded: dict[str, Any], keys: tuple[str, ...]) -> dict[str, Any]:
        """Take each of `keys` from `recorded` (a checkpoint's settings) unless it was given; returns what changed.

        Call it before validate(): the record's values are checked like any other.
        """
        adopted = {}
        for key in keys:
            if key in recorded and not self.given(key) and recorded[key] != getattr(self, key):
                self.set(key, recorded[key])
                self._given.discard(key)  # still not the user's choice: a later record may supply it too
                adopted[key] = getattr(self, key)
        return adopted

    def copy(self) -> "Config":
        """An unfrozen copy that remembers which keys were given."""
        other = Config()
        for key in (k for k in vars(self) if k.isupper()):
            object.__setattr__(other, key, copy.deepcopy(getattr(self, key)))
        other._given = set(self._given)
        return other

    def freeze(self) -> "Config":
        """Make the settings read-only: what was validated is what runs."""
        self._frozen = True
        return self

    def apply_preset(self, name: str) -> None:
        """Apply a named group of settings from PRESETS."""
        if name not in PRESETS:
            raise KeyError(f"unknown preset {name!r}; choose from {sorted(PRESETS)}")
        for key, value in PRESETS[name].items():
            self.set(key, value)

    def apply_opts(self, opts: list[str]) -> None:
        """Apply `KEY VALUE [KEY VALUE ...]` pairs from the command line."""
        if len(opts) % 2:
            raise ValueError(f"--opts takes KEY VALUE pairs; got an odd number of items: {opts}")
        for key, text in zip(opts[0::2], opts[1::2]):
            self.set(key, parse_value(text))

    def validate(self) -> "Config":
        """Check every key against its default's type and RULES, and the relations between keys."""
        lines = []
        for key in self.keys():
            try:
                value = getattr(self, key)
            except (TypeError, AttributeError, ValueError):  # derived from a broken key, which has its own line
                continue
            try:
                valid = bool(RULES[key][0](value))
            except (TypeError, AttributeError, ValueError):  # a value of another type, e.g. edited into this file
                valid = False
            if not valid:
                lines.append(f"{key} {value!r}: must be {RULES[key][1]}")
        if not lines:
            lines = [f"{key} {getattr(self, key)!r}: {message}" for key, message in _relations(self)]
        if lines:
            raise ConfigError("\n".join(lines))
        return self

    def __repr__(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=True)


def parse_value(text: str) -> Any:
    """A command-line value as a Python literal (`3`, `1e-3`, `(465,465)`, `False`), else the string."""
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError):
        return text


# Flags that also take a named mode besides True and False.
FLAG_MODES = {"TEST_COMPILE": ("cudagraphs",)}


def _convert(key: str, value: Any, current: Any) -> Any:
    """`value` in the type of `current`, where the conversion loses nothing; else an error."""
    if current is None or value is None or type(value) is type(current) or value in FLAG_MODES.get(key, ()):
        return value
    if isinstance(current, bool):
        if isinstance(value, int) and value in (0, 1):
            return bool(value)
        if isinstance(value, str) and value.lower() in ("true", "false"):
            return value.lower() == "true"
    elif isinstance(current, float) and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    elif isinstance(current, int) and not isinstance(current, bool):
        if isinstance(value, float) and value.is_integer():
            return int(value)
    elif isinstance(current, (list, tuple)) and isinstance(value, (list, tuple)):
        return type(current)(value)
    elif isinstance(current, str) and isinstance(value, (int, float)) and not isinstance(value, bool):
        return str(value)  # e.g. a path or name that parses as a number
    raise TypeError(f"{key} {value!r}: must be {_kind(current)} (default {current!r}), not {type(value).__name__}")


def _kind(default: Any) -> str:
    return {bool: "True or False", int: "an integer", float: "a number", str: "a string"}.get(
        type(default), "a list" if isinstance(default, (list, tuple)) else type(default).__name__)


def _suggest(name: str, keys: list[str]) -> str:
    close = difflib.get_close_matches(name, keys, n=3, cutoff=0.6)
    return f"; did you mean {', '.join(close)}?" if close else ""


def _jsonable(value: Any) -> Any:
    return list(value) if isinstance(value, tuple) else value


# ---- the command line every entry point shares ----

def add_config_args(parser: argparse.ArgumentParser) -> None:
    """Add --exp_name, --preset, --opts and --print_config."""
    parser.add_argument("--exp_name", default=None, help="run name (log/<exp_name>/)")
    parser.add_argument("--preset", default=None, help="named settings from config.PRESETS, e.g. toy, stage1")
    parser.add_argument("--opts", nargs="+", default=[], metavar="KEY VALUE",
                        help="override config keys: --opts TRAIN_LR 0.01 DATASETS \"['davis2017']\"")
    parser.add_argument("--print_config", action="store_true", help="print the resolved config as JSON and exit")


def load_config(args: argparse.Namespace, validate: bool = True) -> Config:
    """The validated, read-only Config for parsed arguments; ConfigError (one line per violation) when broken.

    `validate` False leaves it unvalidated and writable, for a checkpoint's record to be adopted first.
    """
    cfg = Config()
    try:
        if args.preset:
            cfg.apply_preset(args.preset)
        if args.exp_name:
            cfg.set("EXP_NAME", args.exp_name)
        cfg.apply_opts(args.opts)
    except (KeyError, TypeError, ValueError) as err:
        raise ConfigError(str(err.args[0] if err.args else err)) from None
    return cfg.validate().freeze() if validate else cfg


def config_error_lines(err: ConfigError) -> str:
    """What an entry point prints for a ConfigError: one `config error:` line per violation."""
    return "\n".join(f"config error: {line}" for line in str(err).splitlines())


def settings_record(cfg: Config, **extra: Any) -> dict[str, Any]:
    """The resolved config with the command line, git commit, torch version, device and `extra` (config.json)."""
    return {**extra, "config": cfg.to_dict(), "command": " ".join([os.path.basename(sys.executable)] + sys.argv),
            "git_commit": _git_commit(), "torch": torch.__version__, "device": cfg.DEVICE,
            "device_name": torch.cuda.get_device_name(0) if cfg.DEVICE.startswith("cuda") else "cpu"}


def _git_commit() -> str | None:
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=os.path.dirname(os.path.abspath(__file__)),
                             capture_output=True, text=True, timeout=5)
        return out.stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        return None
