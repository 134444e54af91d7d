"""J only: the mean over sequences of their mean J, and pooled over every scored frame (FBMS, SegTrack-v2)."""
from __future__ import annotations

import os

import numpy as np

from evaluation.evaluators.base import EvaluatorResult
from evaluation.evaluators.region import RegionEvaluator, rows_table
from evaluation.metrics import write_csv


class JEvaluator(RegionEvaluator):
    """J per frame; means per sequence and over sequences, and over frames."""

    def evaluate(self) -> EvaluatorResult:
        per_frame = [self.scores[s.name].j for s in self.sequences]
        rows = [{"Sequence": s.name, "J-Mean": float(j.mean()), "Frames": len(j)}
                for s, j in zip(self.sequences, per_frame)]
        figures = {"J-Mean": float(np.mean([r["J-Mean"] for r in rows])),      # over sequences
                   "J-Mean-frames": float(np.concatenate(per_frame).mean())}   # pooled over every scored frame
        folder = self.context.results_dir
        write_csv(os.path.join(folder, "global_results.csv"), list(figures), [figures])
        write_csv(os.path.join(folder, "per-sequence_results.csv"), ["Sequence", "J-Mean", "Frames"], rows)
        self.warn_soft_ground_truth()
        return EvaluatorResult(figures, ["global_results.csv", "per-sequence_results.csv", self.write_frames()],
                               rows_table(rows, ["J-Mean"]), self.details)
