"""An evaluation's results as a page to look at: `<results>/report/index.html` with its plots beside it.

The page opens from disk (every picture a PNG beside it; tables sort on a click, and read as they
are without the script): the headline figures, links to the CSVs and the mask folders, the
per-sequence table (from the CSVs scoring wrote, worst sequence first), per-sequence bars, each
sequence's J and F over its scored frames on the tables' 0-100 scale (or, for saliency, the
F-measure over thresholds), and thumbnails of each sequence's worst and best frames with the
prediction and the ground truth's contour. `write_summary_page` links the reports of several
benchmarks (`eval.py --dataset all`); `write_video_report` is the page of `eval.py --video`.
"""
from __future__ import annotations

import html
import os
from typing import Sequence

import numpy as np

from evaluation.benchmarks import Benchmark, BenchmarkResult, mask_folder
from evaluation.datasets import EvalSequence
from evaluation.page import cell, link, read_csv, table, write_page
from evaluation.plots import bars, contoured, f_curves, frame_scores, line, strip
from utils.image_io import read_binary_mask, read_image
from utils.spacing import evenly_spaced

REPORT = "report"
STRIP_FRAMES = 3  # worst and best frames shown per sequence
SCORED_NOTE = {"inner": "scored: the annotated frames but the first and last",
               "annotated": "scored: every annotated frame",
               "annotated_nonempty": "scored: the annotated frames whose ground truth is not empty"}
THUMB_LEGEND = ("Thumbnails: the prediction tinted red and outlined in yellow, the ground truth outlined in green; "
                "captions give the frame and its score (0-100).")


def per_sequence_rows(results_dir: str, result: BenchmarkResult) -> tuple[list[str], list[dict[str, str]]]:
    """(columns, rows) of the benchmark's per-sequence CSV, as written by scoring."""
    name = next((f for f in result.files if os.path.basename(f).startswith("per-sequence")), None)
    return read_csv(os.path.join(results_dir, name)) if name else ([], [])


def sort_key(columns: list[str]) -> str | None:
    """The column the page sorts sequences by (worst first): J-Mean, else the S-measure."""
    return next((c for c in ("J-Mean", "S") if c in columns), None)


def _chosen_frames(frames: dict[str, list]) -> list[tuple[str, str]]:
    """(caption, frame name) of the worst and best scored frames (J, or for saliency MAE)."""
    names = frames.get("names", [])
    if "J" in frames:
        order = np.argsort(frames["J"], kind="stable")
        label = lambda i: f"J {100 * frames['J'][i]:.1f}"  # noqa: E731
    elif "MAE" in frames:
        order = np.argsort(frames["MAE"], kind="stable")[::-1]  # the largest error is the worst
        label = lambda i: f"MAE {frames['MAE'][i]:.3f}"  # noqa: E731
    else:
        return []
    worst = [int(i) for i in order[:STRIP_FRAMES]]
    best = [int(i) for i in order[::-1][:STRIP_FRAMES] if i not in worst][::-1]
    return ([(f"worst {names[i]}: {label(i)}", names[i]) for i in worst]
            + [(f"best {names[i]}: {label(i)}", names[i]) for i in best])


def _evenly_spaced(seq: EvalSequence) -> list[tuple[str, str]]:
    names = seq.frame_names
    return [(f"frame {names[i]}", names[i]) for i in evenly_spaced(len(names), 2 * STRIP_FRAMES)]


def contoured_frame(seq: EvalSequence, frame: str, masks: list[str]) -> np.ndarray | None:
    """Frame `frame` of `seq` with the contours of the result masks `masks` (one, or two compared) and of the
    ground truth where annotated; None when the frame or a mask is missing."""
    images = dict(zip(seq.frame_names, seq.images))
    if frame not in images or not all(os.path.isfile(m) for m in masks):
        return None
    truth = read_binary_mask(seq.annotations[frame]) if frame in seq.annotations else None
    second = read_binary_mask(masks[1]) if len(masks) > 1 else None
    return contoured(read_image(images[frame]), read_binary_mask(masks[0]), truth, second)


def _sequence_section(bench: Benchmark, seq: EvalSequence, frames: dict[str, list], results_dir: str,
                      slug: str) -> tuple[list[str], list[str]]:
    """(HTML parts, files written) of one sequence: its frame plot and its thumbnails."""
    folder, parts, written = os.path.join(results_dir, REPORT), [], []
    masks = mask_folder(bench, results_dir, seq.name)
    page = os.path.join(folder, "index.html")
    parts.append(f"<h2 id=seq-{slug}>{html.escape(seq.name)}</h2><p class=muted>{link(masks, page, 'masks')}</p>")
    if frames.get("J"):
        series = {"J (region IoU)": (frames["names"], frames["J"])}
        if frames.get("F"):
            series["F (boundary F-measure)"] = (frames["names"], frames["F"])
        written.append(frame_scores(os.path.join(folder, f"frames_{slug}.png"), seq.name, series,
                                    SCORED_NOTE.get(bench.scored, "")))
    elif frames.get("F_curve"):
        written.append(f_curves(os.path.join(folder, f"frames_{slug}.png"), [np.asarray(frames["F_curve"])],
                                f"{seq.name}: F-measure over thresholds"))
    if written:
        parts.append(f'<img src="frames_{slug}.png" alt="per-frame figures of {html.escape(seq.name)}">')
    pictures = []
    for caption, frame in _chosen_frames(frames) or _evenly_spaced(seq):
        picture = contoured_frame(seq, frame, [os.path.join(masks, frame + ".png")])
        if picture is not None:
            pictures.append((caption, picture))
    if pictures:
        written.append(strip(os.path.join(folder, f"strip_{slug}.png"), pictures))
        parts.append(f'<br><img src="strip_{slug}.png" alt="worst and best frames of {html.escape(seq.name)}">')
    return parts, written


def write_report(bench: Benchmark, sequences: Sequence[EvalSequence], result: BenchmarkResult,
                 results_dir: str, precision: str | None = None) -> list[str]:
    """Write `<results_dir>/report/` for one scored benchmark; returns every file written."""
    folder = os.path.join(results_dir, REPORT)
    page = os.path.join(folder, "index.html")
    os.makedirs(folder, exist_ok=True)
    written: list[str] = []
    columns, rows = per_sequence_rows(results_dir, result)
    key = sort_key(columns)
    if key:
        rows.sort(key=lambda r: float(r[key]))
    csvs = ", ".join(link(os.path.join(results_dir, f), page, f) for f in result.files) or "none"
    parts = [f"<h1>{html.escape(bench.name)}</h1><p class=muted>{html.escape(result.label)}; {len(sequences)} "
             f"sequences; {html.escape(precision or 'scored from existing results')}; results in "
             f"{html.escape(os.path.abspath(results_dir))}</p><p>CSV files: {csvs}</p>",
             "<h2>Headline</h2><p class=muted>×100, as papers report them (MAE as is)</p>",
             table(list(result.headline), [{k: repr(v) for k, v in result.headline.items()}], "headline")]
    if rows:
        parts += [f"<h2>Per sequence</h2><p class=muted>sorted by {key}, worst first; click a column to sort "
                  f"by it</p>", table(columns, rows, "per-sequence")]
        if any(c in columns for c in ("J-Mean", "S")):
            written.append(bars(os.path.join(folder, "per_sequence.png"), rows, columns))
            parts.append('<img src="per_sequence.png" alt="per-sequence figures">')
    curves = [np.asarray(f["F_curve"]) for f in result.frames.values() if "F_curve" in f]
    if curves:
        written.append(f_curves(os.path.join(folder, "f_curves.png"), curves))
        parts.append('<h2>F-measure over thresholds</h2><img src="f_curves.png" alt="F-measure curves">')
    parts.append(f"<p class=muted>{THUMB_LEGEND}</p>")
    by_name = {s.name: s for s in sequences}
    for index, name in enumerate([r["Sequence"] for r in rows] or [s.name for s in sequences]):
        if name in by_name:  # sequence names may hold '/' or odd characters: files are numbered
            section, files = _sequence_section(bench, by_name[name], result.frames.get(name, {}), results_dir,
                                               f"{index:04d}")
            parts += section
            written += files
    written.append(write_page(page, f"{bench.name} results", parts))
    return written


def write_summary_page(path: str, results: list[BenchmarkResult], reports: dict[str, str]) -> str:
    """One page over several benchmarks: their headline figures, each linking to its own report."""
    rows = []
    for r in results:
        figures = ", ".join(f"{k} {cell(k, str(v))}" for k, v in r.headline.items() if k != "videos")
        target = link(reports[r.name], path, r.name) if r.name in reports else html.escape(r.name)
        rows.append({"benchmark": target, "headline": html.escape(figures or "masks only"),
                     "measure": html.escape(r.label)})
    return write_page(path, "LSTA evaluation summary", ["<h1>Evaluation summary</h1>", table(
        ["benchmark", "headline", "measure"], rows, "summary", show=lambda column, value: value)])


def write_video_report(folder: str, frames: list[str], areas: list[float], video: str = "overlay.mp4") -> list[str]:
    """`<folder>/report/`: the overlay video in a player, the object's share of each frame (`areas`) over time,
    and a strip of evenly spaced overlays (`frames`: overlay images)."""
    out = os.path.join(folder, REPORT)
    page = os.path.join(out, "index.html")
    os.makedirs(out, exist_ok=True)
    area = line(os.path.join(out, "area.png"), [100 * a for a in areas], "object, % of the frame")
    thumbs = strip(os.path.join(out, "strip.png"), [(f"frame {os.path.splitext(os.path.basename(frames[i]))[0]}",
                                                     read_image(frames[i]))
                                                    for i in evenly_spaced(len(frames), 2 * STRIP_FRAMES)])
    player = os.path.relpath(os.path.join(folder, video), out)
    parts = [f"<h1>{len(frames)} frames</h1>",
             f"<video id=overlay-video src='{html.escape(player)}' controls muted playsinline style='max-width:100%'>"
             f"</video><p>{link(os.path.join(folder, video), page, 'overlay video')}, "
             f"{link(os.path.join(folder, 'masks'), page, 'masks')}, "
             f"{link(os.path.join(folder, 'overlays'), page, 'overlay images')}</p>",
             '<img src="area.png" alt="object area over frames"><br>', '<img src="strip.png" alt="overlays">']
    return [area, thumbs, write_page(page, "video results", parts)]
