"""The benchmarks of the field as declarative entries, and how each is scored (docs/evaluation.md).

An entry names its root folder's config key, its layout reader, which frames are scored and its
evaluator (evaluation/evaluators/: one per metric kind); `score()` runs the evaluators over a
results folder. Every benchmark runs through the same loop (evaluation/benchmark_run.py).
"""
from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass
from typing import Callable

from config import TEST_SETS
from evaluation.datasets import (
    EvalSequence,
    davis_sequences,
    folder_sequences,
    video_folder_sequences,
)
from evaluation.evaluators import EVALUATORS, Evaluator, EvaluatorResult, ScoringContext
from evaluation.evaluators.saliency import inner_annotated
from utils.errors import DataError


@dataclass(frozen=True)
class DatasetOptions:
    """What a benchmark's reader needs besides its root: the DAVIS split and resolution."""
    split: str = "val"                 # TEST_DATASET_SPLIT
    full_resolution: bool = False      # TEST_DATASET_FULL_RESOLUTION


@dataclass(frozen=True)
class Benchmark:
    """One benchmark: where its data is, how it is laid out, what is scored and how."""
    name: str
    root_key: str                                              # Config key of its root folder
    read: Callable[[str, DatasetOptions], list[EvalSequence]]  # (root, options) → sequences
    scored: str      # inner | annotated | annotated_nonempty | none: which annotated frames count
    evaluator: str   # a name of evaluation.evaluators.EVALUATORS: jf | j | j_class | saliency | none
    label: str       # what its headline figures mean
    submission: bool = False  # masks under Annotations/<seq>/ (YouTube-VOS's upload layout)


def _davis(year: str) -> Callable[[str, DatasetOptions], list[EvalSequence]]:
    def read(root: str, options: DatasetOptions) -> list[EvalSequence]:
        resolution = "Full-Resolution" if options.full_resolution else "480p"
        return davis_sequences(root, year, options.split, resolution)
    return read


def _folder(what: str, split: str | None = None,
            nested: bool = False) -> Callable[[str, DatasetOptions], list[EvalSequence]]:
    return lambda root, options: folder_sequences(root, split, what, nested)


BENCHMARKS: dict[str, Benchmark] = {b.name: b for b in [
    Benchmark("davis2016", "DIR_DAVIS", _davis("2016"), "inner", "jf", "J/F, DAVIS-2016 protocol"),
    Benchmark("davis2017", "DIR_DAVIS", _davis("2017"), "inner", "jf", "J/F, binary foreground (objects merged)"),
    Benchmark("fbms", "DIR_FBMS", _folder("FBMS", "test"), "annotated_nonempty", "j", "J, annotated non-empty frames"),
    Benchmark("yto", "DIR_YTO", _folder("YouTube-Objects"), "annotated_nonempty", "j_class",
              "J, mean over the classes of the mean of their videos"),
    Benchmark("longvideos", "DIR_LONGVIDEOS", _folder("Long-Videos"), "annotated", "jf", "J/F, annotated frames"),
    Benchmark("segtrackv2", "DIR_SEGTRACKV2", _folder("SegTrack-v2"), "annotated", "j", "J, objects merged"),
    Benchmark("visal", "DIR_VISAL", _folder("ViSal"), "inner", "saliency", "saliency (DAVSOD toolbox)"),
    Benchmark("davsod", "DIR_DAVSOD", _folder("DAVSOD"), "inner", "saliency", "saliency (DAVSOD toolbox)"),
    Benchmark("youtubevos", "DIR_YTB_EVAL", _folder("YouTube-VOS valid"), "none", "none",
              "masks in the submission layout (no public ground truth)", submission=True),
]}
if tuple(BENCHMARKS) != TEST_SETS:  # config.TEST_SETS is the one list of names (settings, eval.sh, docs)
    raise ImportError(f"evaluation.benchmarks defines {tuple(BENCHMARKS)}, config.TEST_SETS lists {TEST_SETS}")
# `--dataset folder --root DIR`: every video under a folder, scored where it has Annotations/.
FOLDER = Benchmark("folder", "", lambda root, options: video_folder_sequences(root), "annotated", "jf",
                   "J/F, annotated frames")


def scorable(bench: Benchmark, sequences: list[EvalSequence]) -> Benchmark:
    """`bench`, or for a folder of videos without any Annotations/ an unscored version of it."""
    if bench is FOLDER and not any(s.annotations for s in sequences):
        return dataclasses.replace(FOLDER, scored="none", evaluator="none", label="masks (no Annotations/ to score)")
    return bench


def mask_folder(bench: Benchmark, results_dir: str, sequence: str) -> str:
    """Where a sequence's masks go."""
    return os.path.join(results_dir, "Annotations", sequence) if bench.submission else \
        os.path.join(results_dir, sequence)


def check_scorable(bench: Benchmark, sequences: list[EvalSequence]) -> None:
    """Refuse, before any inference, a sequence the benchmark could not score (e.g. too short)."""
    if bench.evaluator == "none":
        return
    for seq in sequences:
        if not scored_frames(bench, seq):
            what = ("annotated frames besides its first and last annotated ones" if bench.scored == "inner"
                    else "annotated frames")
            raise DataError(f"{bench.name}: sequence {seq.name!r} has no {what} to score "
                            f"({len(seq.frame_names)} frames, {len(seq.annotations)} annotated); remove it from "
                            f"the split or add its annotations")


def scored_frames(bench: Benchmark, seq: EvalSequence) -> list[str]:
    """Names of the frames a benchmark scores (before dropping empty ground truth, where it does)."""
    if bench.scored == "none":
        return []
    return inner_annotated(seq) if bench.scored == "inner" else [n for n in seq.frame_names if n in seq.annotations]


@dataclass
class BenchmarkResult:
    """A benchmark's headline figures (0..1) and the CSVs written."""
    name: str
    label: str
    headline: dict[str, float]
    files: list[str]
    table: str = ""  # per-sequence figures for the console
    # Per sequence, for the report: its scored frames' names and per-frame "J" (and "F"), or for
    # saliency its F-measure over thresholds ("F_curve") and per-frame mean absolute error ("MAE").
    frames: dict[str, dict[str, list]] = dataclasses.field(default_factory=dict)


def scoring_context(bench: Benchmark, results_dir: str, split: str) -> ScoringContext:
    """What `bench`'s evaluators need to score `results_dir`; DAVIS CSVs are named after `split`."""
    return ScoringContext(bench.name, results_dir, split if bench.name.startswith("davis") else None,
                          lambda seq: scored_frames(bench, seq),
                          lambda seq, frame: os.path.join(mask_folder(bench, results_dir, seq.name), frame + ".png"),
                          drop_empty=bench.scored == "annotated_nonempty")


def score(bench: Benchmark, sequences: list[EvalSequence], results_dir: str, split: str,
          saliency: bool = False) -> BenchmarkResult:
    """Score `results_dir` with `bench`'s evaluator; with `saliency`, the saliency measures too."""
    context = scoring_context(bench, results_dir, split)
    names = [bench.evaluator] + (["saliency"] if saliency and bench.evaluator != "saliency" else [])
    headline: dict[str, float] = {}
    files: list[str] = []
    tables: list[str] = []
    details: dict[str, dict[str, list]] = {s.name: {} for s in sequences}
    for name in names:
        result = run_evaluator(EVALUATORS[name](context), sequences)
        headline.update(result.figures)
        files += result.files
        tables += [result.table] if result.table else []
        for sequence, figures in result.details.items():
            details[sequence].update(figures)
    return BenchmarkResult(bench.name, bench.label, headline, files, "\n\n".join(tables), details)


def run_evaluator(evaluator: Evaluator, sequences: list[EvalSequence]) -> EvaluatorResult:
    """reset, process every sequence, evaluate."""
    evaluator.reset()
    for sequence in sequences:
        evaluator.process(sequence)
    return evaluator.evaluate()


def format_summary(results: list[BenchmarkResult]) -> str:
    """One row per benchmark with its headline figures (×100, MAE as is)."""
    lines = [f"{'benchmark':<12s} {'headline figures':<60s} measure"]
    for r in results:
        shown = "  ".join(f"{k} {v:.3f}" if k == "MAE" else (f"{k} {int(v)}" if k == "videos" else f"{k} {100 * v:.1f}")
                          for k, v in r.headline.items() if not k.startswith("J-") or k in ("J-Mean", "J-Mean-frames",
                                                                                             "J-Mean-videos"))
        lines.append(f"{r.name:<12s} {shown:<60s} {r.label}")
    return "\n".join(lines)

