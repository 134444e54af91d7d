"""J & F with the DAVIS statistics (mean, recall, decay per sequence; means over sequences)."""
from __future__ import annotations

from evaluation.evaluators.base import EvaluatorResult
from evaluation.evaluators.region import RegionEvaluator
from evaluation.metrics import davis_figures, format_table, write_davis_csvs


class JFEvaluator(RegionEvaluator):
    """J and F per frame; the DAVIS toolkit's global and per-sequence CSVs."""
    boundary = True

    def evaluate(self) -> EvaluatorResult:
        figures, rows = davis_figures([self.scores[s.name] for s in self.sequences])
        files = write_davis_csvs(self.context.results_dir, self.context.csv_suffix, figures, rows)
        files.append(self.write_frames())
        self.warn_soft_ground_truth()
        return EvaluatorResult({"J&F-Mean": figures["J&F-Mean"], "J-Mean": figures["J-Mean"],
                                "F-Mean": figures["F-Mean"]}, files, format_table(figures, rows), self.details)
