"""The J family's shared work: each sequence's scored (ground truth, result) pairs, their J (and F)."""
from __future__ import annotations

import logging
import os
from collections import Counter

from evaluation.datasets import EvalSequence
from evaluation.evaluators.base import Evaluator
from evaluation.metrics import SequenceScore, score_pairs, write_csv
from utils.errors import DataError
from utils.image_io import read_binary_mask

log = logging.getLogger("lsta.eval")
FRAMES_CSV = "per-frame_results.csv"  # Sequence, Frame, J (and F): what comparisons and plots read


class RegionEvaluator(Evaluator):
    """Per-frame J (and F, with `boundary`) of every processed sequence, in order; subclasses aggregate."""
    boundary = False
    writes_frame_j = True

    def reset(self) -> None:
        self.sequences: list[EvalSequence] = []
        self.scores: dict[str, SequenceScore] = {}
        self.details: dict[str, dict[str, list]] = {}
        self.seen: Counter = Counter()

    def process(self, sequence: EvalSequence) -> None:
        pairs = scored_pairs(self.context, sequence)
        if not pairs:
            raise DataError(f"{self.context.benchmark}: sequence {sequence.name!r} has no scored frame (frames with "
                            f"ground truth{', not empty' if self.context.drop_empty else ''})")
        score = score_pairs(sequence.name, pairs, boundary=self.boundary, seen=self.seen)
        self.sequences.append(sequence)
        self.scores[sequence.name] = score
        self.details[sequence.name] = {"names": [os.path.splitext(os.path.basename(r))[0] for _, r in pairs],
                                       "J": score.j.tolist(), "F": score.f.tolist()}

    def write_frames(self) -> str:
        """per-frame_results.csv: every scored frame's J (and F); returns its name."""
        columns = ["Sequence", "Frame", "J"] + (["F"] if self.boundary else [])
        rows = [{"Sequence": s.name, "Frame": frame, "J": float(j), **({"F": float(f)} if self.boundary else {})}
                for s in self.sequences
                for frame, j, f in zip(self.details[s.name]["names"], self.scores[s.name].j,
                                       self.scores[s.name].f if self.boundary else self.scores[s.name].j)]
        write_csv(os.path.join(self.context.results_dir, FRAMES_CSV), columns, rows)
        return FRAMES_CSV

    def warn_soft_ground_truth(self) -> None:
        """One warning for the ground-truth masks that hold more than one object value."""
        if self.seen["soft"]:
            log.warning(f"{self.context.benchmark}: {self.seen['soft']} ground-truth masks hold more than one object "
                        f"value; any nonzero pixel counts as the object (the DAVIS toolkit's rule)")


def scored_pairs(context, sequence: EvalSequence) -> list[tuple[str, str]]:
    """(ground truth, result mask) of a sequence's scored frames; without empty ground truth where dropped."""
    pairs = [(sequence.annotations[n], context.mask_path(sequence, n)) for n in context.scored_frames(sequence)]
    return [p for p in pairs if read_binary_mask(p[0]).any()] if context.drop_empty else pairs


def rows_table(rows: list[dict], columns: list[str]) -> str:
    """Per-sequence rows as a console table (×100; MAE as is)."""
    width = max([len("Sequence")] + [len(r["Sequence"]) for r in rows])
    lines = [f"{'Sequence':<{width}s}  " + "  ".join(f"{c:>8s}" for c in columns)]
    for r in rows:
        lines.append(f"{r['Sequence']:<{width}s}  " + "  ".join(
            f"{r[c]:8.3f}" if c == "MAE" else f"{100 * r[c]:8.1f}" for c in columns))
    return "\n".join(lines)
