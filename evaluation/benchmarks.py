"""The benchmarks of the field as declarative entries, and how each is scored (docs/evaluation.md).

An entry names its root folder's config key, its layout reader, which frames are scored and its
metric set; `score()` applies the aggregation and writes the CSVs. Every benchmark runs through
the same loop in eval.py.
"""
from __future__ import annotations

import dataclasses
import logging
import os
from collections import Counter
from dataclasses import dataclass
from typing import Callable

import numpy as np

from config import TEST_SETS, Config
from evaluation.datasets import (
    EvalSequence,
    davis_sequences,
    folder_sequences,
    video_folder_sequences,
)
from evaluation.metrics import (
    SequenceScore,
    davis_figures,
    format_table,
    score_pairs,
    write_csv,
    write_davis_csvs,
)
from evaluation.saliency import (
    dataset_saliency,
    read_probability,
    read_saliency_gt,
    sequence_saliency,
)
from utils.errors import DataError, MissingFileError
from utils.image_io import read_binary_mask

log = logging.getLogger("lsta.eval")
PROBABILITIES = "probabilities"  # <results>/probabilities/<seq>/<frame>.png, 8-bit


@dataclass(frozen=True)
class Benchmark:
    """One benchmark: where its data is, how it is laid out, what is scored and how."""
    name: str
    root_key: str                                        # Config key of its root folder
    read: Callable[[Config, str], list[EvalSequence]]    # (cfg, root) → sequences
    scored: str      # inner | annotated | annotated_nonempty | none: which annotated frames count
    metrics: str     # jf (J & F, DAVIS statistics) | j (J per frame) | j_class | saliency | none
    label: str       # what its headline figures mean
    submission: bool = False  # masks under Annotations/<seq>/ (YouTube-VOS's upload layout)


def _davis(year: str) -> Callable[[Config, str], list[EvalSequence]]:
    def read(cfg: Config, root: str) -> list[EvalSequence]:
        resolution = "Full-Resolution" if cfg.TEST_DATASET_FULL_RESOLUTION else "480p"
        return davis_sequences(root, year, cfg.TEST_DATASET_SPLIT, resolution)
    return read


def _folder(what: str, split: str | None = None, nested: bool = False) -> Callable[[Config, str], list[EvalSequence]]:
    return lambda cfg, root: folder_sequences(root, split, what, nested)


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
FOLDER = Benchmark("folder", "", lambda cfg, root: video_folder_sequences(root), "annotated", "jf",
                   "J/F, annotated frames")


def scorable(bench: Benchmark, sequences: list[EvalSequence]) -> Benchmark:
    """`bench`, or for a folder of videos without any Annotations/ an unscored version of it."""
    if bench is FOLDER and not any(s.annotations for s in sequences):
        return dataclasses.replace(FOLDER, scored="none", metrics="none", label="masks (no Annotations/ to score)")
    return bench


def mask_folder(bench: Benchmark, results_dir: str, sequence: str) -> str:
    """Where a sequence's masks go."""
    return os.path.join(results_dir, "Annotations", sequence) if bench.submission else os.path.join(results_dir, sequence)


def check_scorable(bench: Benchmark, sequences: list[EvalSequence]) -> None:
    """Refuse, before any inference, a sequence the benchmark could not score (e.g. too short)."""
    if bench.metrics == "none":
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


def inner_annotated(seq: EvalSequence) -> list[str]:
    """The annotated frames in frame order without the first and last of them.

    The DAVSOD toolbox's main.m loops `for i = 2:fileNUM-1` over the ground-truth files, so on a
    sparsely annotated video (ViSal, FBMS) the first and last annotated frames are dropped, not the
    first and last video frames; DAVIS annotates every frame, where the two rules agree.
    """
    return [n for n in seq.frame_names if n in seq.annotations][1:-1]


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


def score(bench: Benchmark, sequences: list[EvalSequence], results_dir: str, split: str,
          saliency: bool = False) -> BenchmarkResult:
    """Score `results_dir` as `bench` says; with `saliency`, the saliency measures too.

    `split` names the DAVIS CSVs (global_results-val.csv); other benchmarks' CSVs have no suffix.
    """
    split = split if bench.name.startswith("davis") else None
    headline: dict[str, float] = {}
    files: list[str] = []
    tables: list[str] = []
    details: dict[str, dict[str, list]] = {s.name: {} for s in sequences}
    metrics = [bench.metrics] + (["saliency"] if saliency and bench.metrics != "saliency" else [])
    for metric in metrics:
        if metric == "none":
            headline["videos"] = float(len(sequences))
        elif metric == "saliency":
            figures, written, table = _saliency(bench, sequences, results_dir, details)
            headline.update(figures)
            files += written
            tables.append(table)
        else:
            pairs = {s.name: _pairs(bench, s, results_dir, drop_empty=bench.scored == "annotated_nonempty")
                     for s in sequences}
            empty = [name for name, p in pairs.items() if not p]
            if empty:
                raise DataError(f"{bench.name}: sequence {empty[0]!r} has no scored frame (frames with ground truth"
                                 f"{', not empty' if bench.scored == 'annotated_nonempty' else ''})")
            seen: Counter = Counter()
            scores = {s.name: score_pairs(s.name, pairs[s.name], boundary=metric == "jf", seen=seen) for s in sequences}
            for name, seq_score in scores.items():  # per-frame figures, for the report
                details[name].update({"names": [os.path.splitext(os.path.basename(r))[0] for _, r in pairs[name]],
                                      "J": seq_score.j.tolist(), "F": seq_score.f.tolist()})
            figures, written, table = {"jf": _jf, "j": _j, "j_class": _j_class}[metric](sequences, scores,
                                                                                         results_dir, split)
            if seen["soft"]:
                log.warning(f"{bench.name}: {seen['soft']} ground-truth masks hold more than one object value; "
                            f"any nonzero pixel counts as the object (the DAVIS toolkit's rule)")
            headline.update(figures)
            files += written
            tables.append(table)
    return BenchmarkResult(bench.name, bench.label, headline, files, "\n\n".join(tables), details)


def _pairs(bench: Benchmark, seq: EvalSequence, results_dir: str, drop_empty: bool) -> list[tuple[str, str]]:
    folder = mask_folder(bench, results_dir, seq.name)
    pairs = [(seq.annotations[n], os.path.join(folder, n + ".png")) for n in scored_frames(bench, seq)]
    return [p for p in pairs if read_binary_mask(p[0]).any()] if drop_empty else pairs


def _jf(sequences, scores: dict[str, SequenceScore], results_dir: str,
        split: str | None) -> tuple[dict[str, float], list[str], str]:
    figures, rows = davis_figures([scores[s.name] for s in sequences])
    names = write_davis_csvs(results_dir, split, figures, rows)
    return ({"J&F-Mean": figures["J&F-Mean"], "J-Mean": figures["J-Mean"], "F-Mean": figures["F-Mean"]},
            names, format_table(figures, rows))


def _j(sequences, scores: dict[str, SequenceScore], results_dir: str,
       split: str | None) -> tuple[dict[str, float], list[str], str]:
    per_frame = [scores[s.name].j for s in sequences]
    rows = [{"Sequence": s.name, "J-Mean": float(j.mean()), "Frames": len(j)} for s, j in zip(sequences, per_frame)]
    figures = {"J-Mean": float(np.mean([r["J-Mean"] for r in rows])),      # over sequences
               "J-Mean-frames": float(np.concatenate(per_frame).mean())}   # pooled over every scored frame
    write_csv(os.path.join(results_dir, "global_results.csv"), list(figures), [figures])
    write_csv(os.path.join(results_dir, "per-sequence_results.csv"), ["Sequence", "J-Mean", "Frames"], rows)
    return figures, ["global_results.csv", "per-sequence_results.csv"], _rows_table(rows, ["J-Mean"])


def _j_class(sequences, scores: dict[str, SequenceScore], results_dir: str,
             split: str | None) -> tuple[dict[str, float], list[str], str]:
    videos = [{"Sequence": s.name, "Class": s.group, "J-Mean": float(scores[s.name].j.mean())} for s in sequences]
    classes = sorted({v["Class"] for v in videos})
    per_class = [{"Class": c, "J-Mean": float(np.mean([v["J-Mean"] for v in videos if v["Class"] == c])),
                  "Videos": sum(v["Class"] == c for v in videos)} for c in classes]
    figures = {"J-Mean": float(np.mean([c["J-Mean"] for c in per_class])),        # over classes
               "J-Mean-videos": float(np.mean([v["J-Mean"] for v in videos]))}    # over videos
    figures.update({f"J-{c['Class']}": c["J-Mean"] for c in per_class})
    write_csv(os.path.join(results_dir, "global_results.csv"), list(figures), [figures])
    write_csv(os.path.join(results_dir, "per-class_results.csv"), ["Class", "J-Mean", "Videos"], per_class)
    write_csv(os.path.join(results_dir, "per-sequence_results.csv"), ["Sequence", "Class", "J-Mean"], videos)
    table = _rows_table([{"Sequence": c["Class"], "J-Mean": c["J-Mean"]} for c in per_class], ["J-Mean"])
    return figures, ["global_results.csv", "per-class_results.csv", "per-sequence_results.csv"], table


def _saliency(bench: Benchmark, sequences: list[EvalSequence], results_dir: str,
              details: dict[str, dict[str, list]]) -> tuple[dict[str, float], list[str], str]:
    per_sequence, rows, seen = [], [], Counter()
    for seq in sequences:
        frames = inner_annotated(seq)
        if not frames:
            raise DataError(f"{bench.name}: sequence {seq.name!r} has no annotated frame besides its first and "
                             f"last annotated ones")
        pairs = []
        for name in frames:
            path = os.path.join(results_dir, PROBABILITIES, seq.name, name + ".png")
            if not os.path.isfile(path):
                raise MissingFileError(f"probability map missing: {path}")
            pairs.append((read_probability(path), read_saliency_gt(seq.annotations[name], seen)))
        measures = sequence_saliency(pairs)
        per_sequence.append(measures)
        details[seq.name].update({"names": frames, "F_curve": measures["F_curve"].tolist(),
                                  "MAE": [_frame_mae(p, g) for p, g in pairs]})
        rows.append({"Sequence": seq.name, "S": measures["S"], "maxF": float(measures["F_curve"].max()),
                     "adpF": measures["adpF"], "MAE": measures["MAE"]})
    if seen["0/1"]:
        log.warning(f"{bench.name}: {seen['0/1']} ground-truth maps store the object as 1, not 255: read as 0/255")
    if seen["soft"]:
        log.warning(f"{bench.name}: {seen['soft']} ground-truth maps are not binary: thresholded at 128, as the "
                    f"DAVSOD toolbox does")
    figures = dataset_saliency(per_sequence)
    write_csv(os.path.join(results_dir, "saliency_results.csv"), list(figures), [figures])
    write_csv(os.path.join(results_dir, "per-sequence_saliency.csv"), ["Sequence", "S", "maxF", "adpF", "MAE"], rows)
    return (figures, ["saliency_results.csv", "per-sequence_saliency.csv"],
            _rows_table(rows, ["S", "maxF", "adpF", "MAE"]))


def _frame_mae(probability: np.ndarray, gt: np.ndarray) -> float:
    """One frame's MAE as the DAVSOD toolbox computes it: the map min-max normalised, the truth at 128."""
    p = probability.astype(np.float64)
    span = p.max() - p.min()
    p = (p - p.min()) / span if span else p / 255
    return float(np.abs(p - (gt > 128)).mean())


def _rows_table(rows: list[dict], columns: list[str]) -> str:
    width = max([len("Sequence")] + [len(r["Sequence"]) for r in rows])
    lines = [f"{'Sequence':<{width}s}  " + "  ".join(f"{c:>8s}" for c in columns)]
    for r in rows:
        lines.append(f"{r['Sequence']:<{width}s}  " + "  ".join(
            f"{r[c]:8.3f}" if c == "MAE" else f"{100 * r[c]:8.1f}" for c in columns))
    return "\n".join(lines)


def format_summary(results: list[BenchmarkResult]) -> str:
    """One row per benchmark with its headline figures (×100, MAE as is)."""
    lines = [f"{'benchmark':<12s} {'headline figures':<60s} measure"]
    for r in results:
        shown = "  ".join(f"{k} {v:.3f}" if k == "MAE" else (f"{k} {int(v)}" if k == "videos" else f"{k} {100 * v:.1f}")
                          for k, v in r.headline.items() if not k.startswith("J-") or k in ("J-Mean", "J-Mean-frames",
                                                                                             "J-Mean-videos"))
        lines.append(f"{r.name:<12s} {shown:<60s} {r.label}")
    return "\n".join(lines)

