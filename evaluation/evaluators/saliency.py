"""Video salient-object measures (S, max and adaptive F, MAE) with the DAVSOD toolbox's aggregation.

It scores the probability maps (`<results>/probabilities/<seq>/<frame>.png`, 8-bit) on each
sequence's annotated frames without the first and last of them, as the toolbox's main.m does.
"""
from __future__ import annotations

import logging
import os
from collections import Counter

import numpy as np

from evaluation.datasets import EvalSequence
from evaluation.evaluators.base import Evaluator, EvaluatorResult
from evaluation.evaluators.region import rows_table
from evaluation.metrics import write_csv
from evaluation.saliency import (
    dataset_saliency,
    read_probability,
    read_saliency_gt,
    sequence_saliency,
)
from utils.errors import DataError, MissingFileError

log = logging.getLogger("lsta.eval")
PROBABILITIES = "probabilities"  # <results>/probabilities/<seq>/<frame>.png, 8-bit
FRAMES_CSV = "per-frame_saliency.csv"  # Sequence, Frame, MAE


def inner_annotated(seq: EvalSequence) -> list[str]:
    """The annotated frames in frame order without the first and last of them.

    The DAVSOD toolbox's main.m loops `for i = 2:fileNUM-1` over the ground-truth files, so on a
    sparsely annotated video (ViSal, FBMS) the first and last annotated frames are dropped, not the
    first and last video frames; DAVIS annotates every frame, where the two rules agree.
    """
    return [n for n in seq.frame_names if n in seq.annotations][1:-1]


class SaliencyEvaluator(Evaluator):
    """S-measure, F-measure curve and adaptive F, MAE per sequence; means over sequences."""
    reads_probabilities = True

    def reset(self) -> None:
        self.per_sequence: list[dict[str, object]] = []
        self.rows: list[dict] = []
        self.details: dict[str, dict[str, list]] = {}
        self.seen: Counter = Counter()

    def process(self, sequence: EvalSequence) -> None:
        frames = inner_annotated(sequence)
        if not frames:
            raise DataError(f"{self.context.benchmark}: sequence {sequence.name!r} has no annotated frame besides its "
                            f"first and last annotated ones")
        pairs = []
        for name in frames:
            path = os.path.join(self.context.results_dir, PROBABILITIES, sequence.name, name + ".png")
            if not os.path.isfile(path):
                raise MissingFileError(f"probability map missing: {path}")
            pairs.append((read_probability(path), read_saliency_gt(sequence.annotations[name], self.seen)))
        measures = sequence_saliency(pairs)
        self.per_sequence.append(measures)
        self.details[sequence.name] = {"names": frames, "F_curve": measures["F_curve"].tolist(),
                                       "MAE": [frame_mae(p, g) for p, g in pairs]}
        self.rows.append({"Sequence": sequence.name, "S": measures["S"], "maxF": float(measures["F_curve"].max()),
                          "adpF": measures["adpF"], "MAE": measures["MAE"]})

    def evaluate(self) -> EvaluatorResult:
        name = self.context.benchmark
        if self.seen["0/1"]:
            log.warning(f"{name}: {self.seen['0/1']} ground-truth maps store the object as 1, not 255: read as 0/255")
        if self.seen["soft"]:
            log.warning(f"{name}: {self.seen['soft']} ground-truth maps are not binary: thresholded at 128, as the "
                        f"DAVSOD toolbox does")
        figures = dataset_saliency(self.per_sequence)
        folder = self.context.results_dir
        write_csv(os.path.join(folder, "saliency_results.csv"), list(figures), [figures])
        write_csv(os.path.join(folder, "per-sequence_saliency.csv"), ["Sequence", "S", "maxF", "adpF", "MAE"],
                  self.rows)
        frames = [{"Sequence": name, "Frame": frame, "MAE": mae} for name, d in self.details.items()
                  for frame, mae in zip(d["names"], d["MAE"])]
        write_csv(os.path.join(folder, FRAMES_CSV), ["Sequence", "Frame", "MAE"], frames)
        return EvaluatorResult(figures, ["saliency_results.csv", "per-sequence_saliency.csv", FRAMES_CSV],
                               rows_table(self.rows, ["S", "maxF", "adpF", "MAE"]), self.details)


def frame_mae(probability: np.ndarray, gt: np.ndarray) -> float:
    """One frame's MAE as the DAVSOD toolbox computes it: the map min-max normalised, the truth at 128."""
    p = probability.astype(np.float64)
    span = p.max() - p.min()
    p = (p - p.min()) / span if span else p / 255
    return float(np.abs(p - (gt > 128)).mean())
