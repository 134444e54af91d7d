"""What an evaluation run is asked to do, as plain values: eval.py builds one of these from its command line.

Each mode of eval.py takes its own flags; a flag given in a mode that does not use it is refused
with one line (`refuse_unused`), rather than accepted and ignored.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from config import MIN_FRAME_SIDE
from utils.errors import SettingError

MODES = ("new", "overwrite", "resume")


@dataclass(frozen=True)
class BenchmarkRun:
    """Segment and score benchmarks: `--dataset NAME|all|folder`."""
    dataset: str                 # a benchmark name, `all` or `folder`
    root: str | None = None      # the data folder (default: the benchmark's DIR_* key)
    out: str | None = None       # the results folder (for `all`: the folder of the benchmarks' folders)
    mode: str = "new"            # new | overwrite | resume
    saliency: bool = False       # also the saliency measures
    save_probs: bool = False     # 8-bit probability maps
    overlays: bool = False       # overlay images per sequence


@dataclass(frozen=True)
class VideoRun:
    """Segment one video file or folder of frames: `--video`."""
    video: str
    out: str | None = None
    mode: str = "new"
    max_side: int | None = None  # shrink frames to this longer side
    accept_partial: bool = False  # keep what a damaged video decodes
    save_probs: bool = False

    def __post_init__(self) -> None:
        if self.max_side is not None and self.max_side < MIN_FRAME_SIDE:
            raise SettingError(f"--max_side {self.max_side} is below {MIN_FRAME_SIDE}, the smallest frame side the "
                               f"network accepts")


@dataclass(frozen=True)
class ScoreOnlyRun:
    """Score existing results of one benchmark: `--score_only RESULTS_DIR`."""
    results: str
    dataset: str
    root: str | None = None
    saliency: bool = False


@dataclass(frozen=True)
class CompareRun:
    """Compare results folders of one benchmark: `--compare A B [...]`."""
    folders: tuple[str, ...]
    out: str | None = None
    mode: str = "new"
    dataset: str | None = None    # the benchmark, when the folders' records do not say (another method's masks)
    root: str | None = None       # its data, for the thumbnails (default: its DIR_* key)


# The flags each mode takes (eval.py's option names); a flag outside its mode's set is refused.
MODE_FLAGS = {
    "benchmark": {"dataset", "root", "ckpt_path", "out", "overwrite", "resume", "saliency", "save_probs", "overlays"},
    # Overlays are always written for a video: --overlays is accepted and changes nothing.
    "video": {"video", "ckpt_path", "out", "overwrite", "resume", "max_side", "accept_partial_video", "save_probs",
              "overlays"},
    "score_only": {"score_only", "dataset", "root", "saliency"},
    "compare": {"compare", "out", "overwrite", "dataset", "root"},
}


MODE_NAMES = {"benchmark": "a benchmark evaluation", "video": "--video", "score_only": "--score_only",
              "compare": "--compare"}


def refuse_unused(mode: str, given: set[str]) -> None:
    """One error naming the flags of `given` that mode `mode` does not use."""
    unused = sorted(given - MODE_FLAGS[mode])
    if unused:
        flags = ", ".join(f"--{name}" for name in unused)
        raise SettingError(f"{flags}: not used by {MODE_NAMES[mode]}; drop {'it' if len(unused) == 1 else 'them'}")


def run_mode(overwrite: bool, resume: bool) -> str:
    """new, overwrite or resume; both flags at once is an error."""
    if overwrite and resume:
        raise SettingError("--overwrite and --resume exclude each other: redo the evaluation, or finish it")
    return "overwrite" if overwrite else "resume" if resume else "new"


FLAGS = sorted(set().union(*MODE_FLAGS.values()))  # every flag of eval.py that chooses what a run does


def run_from_flags(flags: dict[str, Any], default_dataset: str) -> BenchmarkRun | VideoRun | ScoreOnlyRun | CompareRun:
    """The run eval.py's flags (name → value, for every name of FLAGS) ask for; unused flags are refused."""
    modes = [m for m in ("video", "score_only", "compare") if flags[m]]
    if len(modes) > 1:
        raise SettingError(f"{' and '.join('--' + m for m in modes)} exclude each other: one at a time")
    mode = modes[0] if modes else "benchmark"
    refuse_unused(mode, {name for name, value in flags.items() if value not in (None, False)})
    if mode == "compare":
        return CompareRun(tuple(flags["compare"]), flags["out"], run_mode(flags["overwrite"], False),
                          flags["dataset"], flags["root"])
    dataset = flags["dataset"] or default_dataset
    if mode == "score_only":
        return ScoreOnlyRun(flags["score_only"], dataset, flags["root"], flags["saliency"])
    if mode == "video":
        return VideoRun(flags["video"], flags["out"], run_mode(flags["overwrite"], flags["resume"]), flags["max_side"],
                        flags["accept_partial_video"], flags["save_probs"])
    return BenchmarkRun(dataset, flags["root"], flags["out"], run_mode(flags["overwrite"], flags["resume"]),
                        flags["saliency"], flags["save_probs"], flags["overlays"])
