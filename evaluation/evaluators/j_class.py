"""J per class: the mean over classes of the mean of their videos (YouTube-Objects)."""
from __future__ import annotations

import os

import numpy as np

from evaluation.evaluators.base import EvaluatorResult
from evaluation.evaluators.region import RegionEvaluator, rows_table
from evaluation.metrics import write_csv


class ClassJEvaluator(RegionEvaluator):
    """J per frame; means per video, per class (a sequence's `group`), and over classes."""

    def evaluate(self) -> EvaluatorResult:
        videos = [{"Sequence": s.name, "Class": s.group, "J-Mean": float(self.scores[s.name].j.mean())}
                  for s in self.sequences]
        classes = sorted({v["Class"] for v in videos})
        per_class = [{"Class": c, "J-Mean": float(np.mean([v["J-Mean"] for v in videos if v["Class"] == c])),
                      "Videos": sum(v["Class"] == c for v in videos)} for c in classes]
        figures = {"J-Mean": float(np.mean([c["J-Mean"] for c in per_class])),        # over classes
                   "J-Mean-videos": float(np.mean([v["J-Mean"] for v in videos]))}    # over videos
        figures.update({f"J-{c['Class']}": c["J-Mean"] for c in per_class})
        folder = self.context.results_dir
        write_csv(os.path.join(folder, "global_results.csv"), list(figures), [figures])
        write_csv(os.path.join(folder, "per-class_results.csv"), ["Class", "J-Mean", "Videos"], per_class)
        write_csv(os.path.join(folder, "per-sequence_results.csv"), ["Sequence", "Class", "J-Mean"], videos)
        self.warn_soft_ground_truth()
        table = rows_table([{"Sequence": c["Class"], "J-Mean": c["J-Mean"]} for c in per_class], ["J-Mean"])
        return EvaluatorResult(figures, ["global_results.csv", "per-class_results.csv", "per-sequence_results.csv",
                                         self.write_frames()], table, self.details)
