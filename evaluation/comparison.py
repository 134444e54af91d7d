"""A comparison page of results folders of one benchmark: two checkpoints, or another method's masks.

    eval.py --compare RESULTS_A RESULTS_B [...] [--out DIR]

Everything comes from the CSVs scoring wrote in each folder (eval.py, or `--score_only` for another
method's masks): the headline figures side by side with their differences to the first folder,
the per-sequence differences sorted (the largest drop first), each sequence's J over its frames in
every folder, and the frames where the first two differ most, with both predictions' contours and
the ground truth's. The page is a results folder of its own (lock, record, written files).
"""
from __future__ import annotations

import html
import json
import logging
import os
from dataclasses import dataclass

from config import Config
from evaluation.benchmarks import BENCHMARKS, FOLDER, Benchmark, DatasetOptions, mask_folder
from evaluation.datasets import EvalSequence
from evaluation.evaluators.region import FRAMES_CSV
from evaluation.options import CompareRun
from evaluation.page import cell, read_csv, table, write_page
from evaluation.plots import frame_scores, strip
from evaluation.report import contoured_frame
from evaluation.results_folder import RECORD, ResultsFolder
from utils.errors import DataError, MissingFileError, SettingError, UserError

log = logging.getLogger("lsta.eval")
DIFFERING_FRAMES = 6


@dataclass
class Scored:
    """One results folder as its CSVs give it."""
    folder: str
    label: str
    benchmark: str | None
    headline: dict[str, str]
    sequences: dict[str, dict[str, str]]          # sequence → its per-sequence row
    frames: dict[str, dict[str, float]]           # sequence → frame → J
    settings: dict                                # the settings its evaluation recorded (eval.json), or {}


def _one(path: str, pattern: tuple[str, ...]) -> str | None:
    found = sorted(n for n in os.listdir(path) if n.startswith(pattern) and n.endswith(".csv"))
    return os.path.join(path, found[0]) if found else None


def read_scored(folder: str) -> Scored:
    """A results folder's scores; one error naming the folder when it was not scored with per-frame figures."""
    if not os.path.isdir(folder):
        raise MissingFileError(f"--compare: results folder {folder} not found")
    record = {}
    if os.path.isfile(os.path.join(folder, RECORD)):
        with open(os.path.join(folder, RECORD)) as f:
            record = json.load(f)
    headline_csv, sequence_csv = _one(folder, ("global_results",)), _one(folder, ("per-sequence_results",))
    frames_csv = os.path.join(folder, FRAMES_CSV)
    if not (headline_csv and sequence_csv and os.path.isfile(frames_csv)):
        raise MissingFileError(f"--compare: {folder} holds no J scores with per-frame figures ({FRAMES_CSV}): "
                               f"score it with eval.py --score_only {folder} --dataset NAME")
    headline = read_csv(headline_csv)[1][0]
    sequences = {r["Sequence"]: r for r in read_csv(sequence_csv)[1]}
    frames: dict[str, dict[str, float]] = {}
    for row in read_csv(frames_csv)[1]:
        frames.setdefault(row["Sequence"], {})[row["Frame"]] = float(row["J"])
    label = os.path.basename(os.path.normpath(folder))
    return Scored(folder, label, record.get("benchmark"), headline, sequences, frames, record.get("settings", {}))


def _labels(scored: list[Scored]) -> None:
    """Distinct labels: each folder's name, with its parent's where two share one."""
    names = [s.label for s in scored]
    for s in scored:
        if names.count(s.label) > 1:
            s.label = os.path.join(os.path.basename(os.path.dirname(os.path.normpath(s.folder))), s.label)


def _benchmark(scored: list[Scored], dataset: str | None) -> Benchmark | None:
    named = {s.benchmark for s in scored if s.benchmark} | ({dataset} if dataset else set())
    if len(named) > 1:
        raise SettingError(f"--compare: the folders are of different benchmarks ({', '.join(sorted(named))})")
    name = next(iter(named), None)
    return BENCHMARKS.get(name) if name != "folder" else FOLDER


def _data(bench: Benchmark | None, cfg: Config, root: str | None, recorded: dict) -> dict[str, EvalSequence]:
    """The benchmark's sequences (frames and ground truth, for the thumbnails), or {} when its data is not here.

    Where the data is comes from `--root`, else from the settings the first folder's evaluation
    recorded where that folder exists from here (a run with `--preset toy` compares without
    repeating it), else from `cfg`."""
    if bench is None:
        return {}
    keys = (bench.root_key, "TEST_DATASET_SPLIT", "TEST_DATASET_FULL_RESOLUTION")
    data_root, split, full_resolution = (recorded.get(k, getattr(cfg, k, "")) for k in keys)
    if not os.path.isdir(data_root):  # recorded relative to where that evaluation ran
        data_root = getattr(cfg, bench.root_key, "")
    try:
        sequences = bench.read(root or data_root, DatasetOptions(split, full_resolution))
    except (UserError, OSError) as err:
        log.warning(f"--compare: no thumbnails ({err})")
        return {}
    return {s.name: s for s in sequences}


def _headline_table(scored: list[Scored]) -> str:
    """Measures as rows, folders as columns, then each folder's difference to the first."""
    first, measures = scored[0], list(scored[0].headline)
    columns = ["measure"] + [s.label for s in scored] + [f"{s.label} − {first.label}" for s in scored[1:]]
    rows = []
    for measure in measures:
        row = {"measure": measure, **{s.label: s.headline.get(measure, "") for s in scored}}
        for s in scored[1:]:
            row[f"{s.label} − {first.label}"] = _difference(first.headline.get(measure), s.headline.get(measure))
        rows.append(row)
    return table(columns, rows, "compare-headline", show=_show)


def _difference(a: str | None, b: str | None) -> str:
    try:
        return repr(float(b) - float(a))
    except (TypeError, ValueError):
        return ""


def _show(column: str, value: str) -> str:
    """A figure ×100 (as the reports show them); differences coloured by sign."""
    if column in ("measure", "Sequence"):
        return html.escape(value)
    shown = cell("score", value)
    if "−" in column and value:
        sign = float(value)
        kind = "better" if sign > 0 else "worse" if sign < 0 else ""
        return f'<span class="{kind}">{"+" if sign > 0 else ""}{shown}</span>'
    return shown


def _sequence_table(scored: list[Scored], key: str) -> tuple[str, list[str]]:
    """Per-sequence `key` of the first two folders and their difference, the largest drop first; the order."""
    a, b = scored[0], scored[1]
    names = [n for n in a.sequences if n in b.sequences]
    diff = f"{b.label} − {a.label}"
    rows = [{"Sequence": n, a.label: a.sequences[n][key], b.label: b.sequences[n][key],
             diff: repr(float(b.sequences[n][key]) - float(a.sequences[n][key]))} for n in names]
    rows.sort(key=lambda r: float(r[diff]))
    return table(["Sequence", a.label, b.label, diff], rows, "compare-sequences",
                 show=_show), [r["Sequence"] for r in rows]


def _differing_frames(scored: list[Scored], bench: Benchmark | None, data: dict[str, EvalSequence],
                      folder: str) -> list[str]:
    """The frames where the first two folders' J differ most, with both contours and the ground truth's."""
    a, b = scored[0], scored[1]
    gaps = sorted(((abs(b.frames[s][f] - a.frames[s][f]), s, f) for s in a.frames if s in b.frames
                   for f in a.frames[s] if f in b.frames[s]), reverse=True)[:DIFFERING_FRAMES]
    pictures = []
    for _, name, frame in gaps:
        seq = data.get(name)
        masks = [os.path.join(mask_folder(bench, s.folder, name), frame + ".png") for s in (a, b)]
        picture = contoured_frame(seq, frame, masks) if seq else None
        if picture is not None:
            caption = f"{name} {frame}: J {100 * a.frames[name][frame]:.0f} vs {100 * b.frames[name][frame]:.0f}"
            pictures.append((caption, picture))
    if not pictures:
        return []
    return [strip(os.path.join(folder, "differing_frames.png"), pictures)]


def compare(cfg: Config, run: CompareRun) -> str:
    """Write the comparison page of `run.folders`; returns the page's path."""
    if len(run.folders) < 2:
        raise SettingError("--compare takes two results folders or more")
    scored = [read_scored(f) for f in run.folders]
    _labels(scored)
    bench = _benchmark(scored, run.dataset)
    key = next((k for k in ("J&F-Mean", "J-Mean") if k in scored[0].headline), None)
    if key is None or any(set(s.sequences) != set(scored[0].sequences) for s in scored):
        raise DataError("--compare: the folders do not score the same sequences of one benchmark")
    out = run.out or os.path.join(os.path.dirname(os.path.normpath(run.folders[0])),
                                  "compare-" + "-".join(s.label.replace(os.sep, "_") for s in scored))
    place = ResultsFolder(out, list(run.folders))
    place.check_place()
    place.open(run.mode, {"benchmark": "comparison", "compared": list(run.folders)})
    try:
        data = _data(bench, cfg, run.root, scored[0].settings)
        page = os.path.join(out, "index.html")
        sequences, order = _sequence_table(scored, "J-Mean")
        parts = [f"<h1>Comparison: {html.escape(' vs '.join(s.label for s in scored))}</h1>",
                 f"<p class=muted>{html.escape(bench.name if bench else 'benchmark not recorded')}; "
                 f"{len(order)} sequences; from each folder's CSVs: "
                 + ", ".join(html.escape(os.path.abspath(s.folder)) for s in scored) + "</p>",
                 "<h2>Headline</h2>", _headline_table(scored),
                 f"<h2>Per sequence: J-Mean</h2><p class=muted>{html.escape(scored[1].label)} against "
                 f"{html.escape(scored[0].label)}, the largest drop first</p>", sequences]
        written = _differing_frames(scored, bench, data, out)
        if written:
            parts.append(f"<h2>Where they differ most</h2><p class=muted>{html.escape(scored[0].label)}: red tint "
                         f"and yellow outline; {html.escape(scored[1].label)}: blue outline; the ground truth: green "
                         f"outline</p><img src='differing_frames.png' alt='frames where they differ most'>")
        parts.append("<h2>J over frames</h2>")
        for index, name in enumerate(order):
            series = {s.label: (list(s.frames[name]), list(s.frames[name].values())) for s in scored}
            written.append(frame_scores(os.path.join(out, f"frames_{index:04d}.png"), f"{name}: J per frame",
                                        series))
            parts.append(f'<img src="frames_{index:04d}.png" alt="J over frames of {html.escape(name)}">')
        written.append(write_page(page, "comparison", parts))
        place.add_files(written)
        place.complete()
    finally:
        place.close()
    log.info(f"comparison: {page}")
    return page
