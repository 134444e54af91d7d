"""The interface of an evaluator (one metric kind): reset, process each sequence's results, evaluate.

As detectron2's DatasetEvaluator: an evaluator is built for one benchmark's results folder
(`ScoringContext`), `process`es its sequences one by one (reading their masks or probability maps
from disk, so that `--score_only` scores any method's results alike) and `evaluate`s them into
headline figures, CSV files, a console table and per-frame details for the report.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

from evaluation.datasets import EvalSequence


@dataclass(frozen=True)
class ScoringContext:
    """What an evaluator needs of the benchmark and the results folder it scores."""
    benchmark: str                                   # its name, for messages
    results_dir: str
    csv_suffix: str | None                           # DAVIS names its CSVs after the split (global_results-val.csv)
    scored_frames: Callable[[EvalSequence], list[str]]   # the frames a sequence is scored on, in order
    mask_path: Callable[[EvalSequence, str], str]    # a frame's result mask
    drop_empty: bool = False                         # frames whose ground truth is empty are not scored


@dataclass
class EvaluatorResult:
    """Headline figures (0..1; MAE as is), the CSV files written (names in the results folder), a console
    table, and per sequence the figures the report plots (`details`)."""
    figures: dict[str, float]
    files: list[str] = field(default_factory=list)
    table: str = ""
    details: dict[str, dict[str, list]] = field(default_factory=dict)


class Evaluator:
    """One metric kind, e.g. J & F with the DAVIS statistics; registered by name in evaluation/evaluators/."""
    label_hint = ""  # what its figures are, when a benchmark entry does not say
    reads_probabilities = False  # scores the probability maps: evaluations write them for it
    writes_frame_j = False       # writes per-frame J (FRAMES_CSV), which `eval.py --compare` reads

    def __init__(self, context: ScoringContext) -> None:
        self.context = context
        self.reset()

    def reset(self) -> None:
        """Forget every processed sequence."""

    def process(self, sequence: EvalSequence) -> None:
        """Score one sequence's results (read from the results folder)."""
        raise NotImplementedError

    def evaluate(self) -> EvaluatorResult:
        """The figures over every processed sequence; writes the CSVs."""
        raise NotImplementedError
