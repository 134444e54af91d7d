"""The evaluators, by the name a benchmark entry gives: a new metric kind is one file here and one line below."""
from __future__ import annotations

from evaluation.evaluators.base import Evaluator, EvaluatorResult, ScoringContext
from evaluation.evaluators.j import JEvaluator
from evaluation.evaluators.j_class import ClassJEvaluator
from evaluation.evaluators.jf import JFEvaluator
from evaluation.evaluators.masks_only import MasksOnlyEvaluator
from evaluation.evaluators.saliency import SaliencyEvaluator

EVALUATORS: dict[str, type[Evaluator]] = {
    "jf": JFEvaluator,            # J & F, DAVIS statistics
    "j": JEvaluator,              # J per frame, means over sequences and over frames
    "j_class": ClassJEvaluator,   # J, mean over classes of the mean of their videos
    "saliency": SaliencyEvaluator,  # S, max/adaptive F, MAE (DAVSOD toolbox)
    "none": MasksOnlyEvaluator,   # nothing to score
}

__all__ = ["EVALUATORS", "Evaluator", "EvaluatorResult", "ScoringContext"]
