"""No ground truth to score (YouTube-VOS valid, your own videos): the count of videos whose masks were written."""
from __future__ import annotations

from evaluation.datasets import EvalSequence
from evaluation.evaluators.base import Evaluator, EvaluatorResult


class MasksOnlyEvaluator(Evaluator):
    """Counts the videos; their masks are meant for upload or for looking at."""

    def reset(self) -> None:
        self.count = 0

    def process(self, sequence: EvalSequence) -> None:
        self.count += 1

    def evaluate(self) -> EvaluatorResult:
        return EvaluatorResult({"videos": float(self.count)})
