"""An evaluation's results as a page to look at: `<results>/report/index.html` with its plots beside it.

The page opens from disk (no server, no script, every image a PNG beside it): the headline figures,
the per-sequence table (from the CSVs scoring wrote, worst sequence first), per-sequence bars,
each sequence's J over its frames (or, for saliency, the F-measure over thresholds), and a strip
of overlay thumbnails at each sequence's worst and best frames. `write_summary_page` links the
reports of several benchmarks (`eval.py --dataset all`).
"""
from __future__ import annotations

import csv
import html
import os
from typing import Sequence

import cv2
import numpy as np

from evaluation.benchmarks import Benchmark, BenchmarkResult, mask_folder
from evaluation.datasets import EvalSequence
from utils.files import atomic_write
from utils.image_io import read_binary_mask, read_image, write_image
from utils.overlay import overlay

REPORT = "report"
THUMB_HEIGHT = 96
STRIP_FRAMES = 3  # worst and best frames shown per sequence

STYLE = """body{font-family:system-ui,sans-serif;margin:2em;max-width:1100px;color:#222}
table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #ccc;padding:3px 8px;text-align:right}
td:first-child,th:first-child{text-align:left}img{max-width:100%}h2{margin-top:2em}.muted{color:#777}"""


def _pyplot():
    import matplotlib
    matplotlib.use("Agg")  # files only: no display, on any machine
    import matplotlib.pyplot as plt
    return plt


def per_sequence_rows(results_dir: str, result: BenchmarkResult) -> tuple[list[str], list[dict[str, str]]]:
    """(columns, rows) of the benchmark's per-sequence CSV, as written by scoring."""
    name = next((f for f in result.files if os.path.basename(f).startswith("per-sequence")), None)
    if name is None:
        return [], []
    with open(os.path.join(results_dir, name), newline="") as f:
        reader = csv.DictReader(f)
        return list(reader.fieldnames or []), list(reader)


def sort_key(columns: list[str]) -> str | None:
    """The column the page sorts sequences by (worst first): J-Mean, else the S-measure."""
    return next((c for c in ("J-Mean", "S") if c in columns), None)


def _cell(column: str, value: str) -> str:
    try:
        number = float(value)
    except ValueError:
        return html.escape(value)
    if column in ("Frames", "Videos", "videos"):
        return str(int(number))
    return f"{number:.3f}" if column == "MAE" else f"{100 * number:.1f}"


def _table(columns: list[str], rows: list[dict[str, str]], table_id: str) -> str:
    head = "".join(f"<th>{html.escape(c)}</th>" for c in columns)
    body = "".join("<tr>" + "".join(f"<td>{_cell(c, r[c])}</td>" for c in columns) + "</tr>" for r in rows)
    return f'<table id="{table_id}"><tr>{head}</tr>{body}</table>'


def _bars(path: str, rows: list[dict[str, str]], columns: list[str]) -> None:
    plt = _pyplot()
    shown = [c for c in ("J-Mean", "F-Mean", "S", "maxF") if c in columns]
    names = [r["Sequence"] for r in rows]
    fig, ax = plt.subplots(figsize=(8, 0.3 * len(names) + 1.2))
    y = np.arange(len(names))
    height = 0.8 / max(len(shown), 1)
    for i, column in enumerate(shown):
        ax.barh(y + i * height, [100 * float(r[column]) for r in rows], height, label=column)
    ax.set_yticks(y + height * (len(shown) - 1) / 2, names, fontsize=7)
    ax.invert_yaxis()
    ax.set_xlim(0, 100)
    ax.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def _frame_plot(path: str, name: str, frames: dict[str, list]) -> None:
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(5, 1.8))
    if "F_curve" in frames:  # saliency: F-measure over the 256 thresholds
        ax.plot(np.linspace(0, 1, len(frames["F_curve"])), frames["F_curve"])
        ax.set_xlabel("threshold", fontsize=8)
        ax.set_ylabel("F", fontsize=8)
    else:
        names = frames.get("names", [])
        numbered = len(names) == len(frames["J"]) and all(n.isdigit() for n in names)
        x = [int(n) for n in names] if numbered else list(range(len(frames["J"])))
        ax.plot(x, frames["J"], label="J")
        if frames.get("F"):
            ax.plot(x, frames["F"], label="F", alpha=0.7)
        ax.set_xlabel("frame" if numbered else "scored frame", fontsize=8)
        ax.legend(fontsize=7)
    ax.set_ylim(0, 1.02)
    ax.set_title(name, fontsize=9)
    ax.tick_params(labelsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)


def _saliency_curves(path: str, result: BenchmarkResult) -> None:
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6, 3.5))
    curves = [np.asarray(f["F_curve"]) for f in result.frames.values() if "F_curve" in f]
    for curve in curves:
        ax.plot(np.linspace(0, 1, len(curve)), curve, color="0.75", linewidth=0.8)
    mean = np.mean(curves, axis=0)
    ax.plot(np.linspace(0, 1, len(mean)), mean, color="C3", linewidth=2, label="dataset (mean curve)")
    ax.set_xlabel("threshold")
    ax.set_ylabel("F-measure")
    ax.set_ylim(0, 1.02)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def _strip(path: str, pictures: list[tuple[str, np.ndarray]]) -> None:
    """Thumbnails side by side, each captioned."""
    thumbs = []
    for caption, image in pictures:
        scale = THUMB_HEIGHT / image.shape[0]
        thumb = cv2.resize(image, (max(1, round(image.shape[1] * scale)), THUMB_HEIGHT), interpolation=cv2.INTER_AREA)
        thumb = cv2.copyMakeBorder(thumb, 16, 0, 0, 4, cv2.BORDER_CONSTANT, value=(255, 255, 255))
        cv2.putText(thumb, caption, (2, 12), cv2.FONT_HERSHEY_SIMPLEX, 0.38, (0, 0, 0), 1, cv2.LINE_AA)
        thumbs.append(thumb)
    write_image(path, np.concatenate(thumbs, axis=1))


def _chosen_frames(frames: dict[str, list]) -> list[tuple[str, str]]:
    """(caption, frame name) of the worst and best scored frames (J, or for saliency MAE)."""
    names = frames.get("names", [])
    if "J" in frames:
        order = np.argsort(frames["J"], kind="stable")
        label = lambda i: f"J {100 * frames['J'][i]:.0f}"  # noqa: E731
    elif "MAE" in frames:
        order = np.argsort(frames["MAE"], kind="stable")[::-1]  # the largest error is the worst
        label = lambda i: f"MAE {frames['MAE'][i]:.3f}"  # noqa: E731
    else:
        return []
    worst = [int(i) for i in order[:STRIP_FRAMES]]
    best = [int(i) for i in order[::-1][:STRIP_FRAMES] if i not in worst][::-1]
    return ([(f"worst {names[i]} {label(i)}", names[i]) for i in worst]
            + [(f"best {names[i]} {label(i)}", names[i]) for i in best])


def write_report(bench: Benchmark, sequences: Sequence[EvalSequence], result: BenchmarkResult,
                 results_dir: str, precision: str | None = None) -> list[str]:
    """Write `<results_dir>/report/` for one scored benchmark; returns every file written."""
    folder = os.path.join(results_dir, REPORT)
    os.makedirs(folder, exist_ok=True)
    written: list[str] = []
    columns, rows = per_sequence_rows(results_dir, result)
    key = sort_key(columns)
    if key:
        rows.sort(key=lambda r: float(r[key]))
    parts = [f"<h1>{html.escape(bench.name)}</h1><p class=muted>{html.escape(result.label)}; "
             f"{len(sequences)} sequences; {html.escape(precision or 'scored from existing results')}; "
             f"results in {html.escape(os.path.abspath(results_dir))}</p>",
             "<h2>Headline</h2>",
             _table(list(result.headline), [{k: repr(v) for k, v in result.headline.items()}], "headline")]
    if rows:
        parts += [f"<h2>Per sequence</h2><p class=muted>sorted by {key}, worst first</p>",
                  _table(columns, rows, "per-sequence")]
        if any(c in columns for c in ("J-Mean", "S")):
            _bars(os.path.join(folder, "per_sequence.png"), rows, columns)
            written.append(os.path.join(folder, "per_sequence.png"))
            parts.append('<img src="per_sequence.png" alt="per-sequence figures">')
    if any("F_curve" in f for f in result.frames.values()):
        _saliency_curves(os.path.join(folder, "f_curves.png"), result)
        written.append(os.path.join(folder, "f_curves.png"))
        parts.append('<h2>F-measure over thresholds</h2><img src="f_curves.png" alt="F-measure curves">')
    by_name = {s.name: s for s in sequences}
    order = [r["Sequence"] for r in rows] or [s.name for s in sequences]
    for index, name in enumerate(order):
        seq, frames = by_name.get(name), result.frames.get(name, {})
        if seq is None:
            continue
        slug = f"{index:04d}"  # sequence names may hold '/' or odd characters: files are numbered
        parts.append(f"<h2 id=seq-{slug}>{html.escape(name)}</h2>")
        if frames.get("J") or frames.get("F_curve"):
            plot = os.path.join(folder, f"frames_{slug}.png")
            _frame_plot(plot, name, frames)
            written.append(plot)
            parts.append(f'<img src="frames_{slug}.png" alt="per-frame figures of {html.escape(name)}">')
        chosen = _chosen_frames(frames) or _evenly_spaced(seq)
        pictures = []
        images = dict(zip(seq.frame_names, seq.images))
        for caption, frame in chosen:
            mask_path = os.path.join(mask_folder(bench, results_dir, name), frame + ".png")
            if frame in images and os.path.isfile(mask_path):
                pictures.append((caption, overlay(read_image(images[frame]), read_binary_mask(mask_path))))
        if pictures:
            strip = os.path.join(folder, f"strip_{slug}.png")
            _strip(strip, pictures)
            written.append(strip)
            parts.append(f'<br><img src="strip_{slug}.png" alt="worst and best frames of {html.escape(name)}">')
    written.append(_page(os.path.join(folder, "index.html"), f"{bench.name} results", parts))
    return written


def _evenly_spaced(seq: EvalSequence) -> list[tuple[str, str]]:
    names = seq.frame_names
    picks = sorted({round(i) for i in np.linspace(0, len(names) - 1, min(2 * STRIP_FRAMES, len(names)))})
    return [(f"frame {names[i]}", names[i]) for i in picks]


def write_summary_page(path: str, results: list[BenchmarkResult], reports: dict[str, str]) -> str:
    """One page over several benchmarks: their headline figures, each linking to its own report."""
    rows = []
    for r in results:
        link = os.path.relpath(reports[r.name], os.path.dirname(path)) if r.name in reports else ""
        figures = ", ".join(f"{k} {v:.3f}" if k == "MAE" else f"{k} {100 * v:.1f}" for k, v in r.headline.items()
                            if k != "videos")
        rows.append(f'<tr><td><a href="{html.escape(link)}">{html.escape(r.name)}</a></td>'
                    f"<td>{html.escape(figures or 'masks only')}</td><td>{html.escape(r.label)}</td></tr>")
    table = f'<table id="summary"><tr><th>benchmark</th><th>headline</th><th>measure</th></tr>{"".join(rows)}</table>'
    return _page(path, "LSTA evaluation summary", ["<h1>Evaluation summary</h1>", table])


def write_video_report(folder: str, frames: list[str], areas: list[float]) -> list[str]:
    """`<folder>/report/`: the object's share of each frame (`areas`) over time and a strip of evenly spaced overlays (`frames`: overlay images)."""
    out = os.path.join(folder, REPORT)
    os.makedirs(out, exist_ok=True)
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6, 2))
    ax.plot(range(len(areas)), [100 * a for a in areas])
    ax.set_xlabel("frame")
    ax.set_ylabel("object, % of frame")
    fig.tight_layout()
    fig.savefig(os.path.join(out, "area.png"), dpi=90)
    plt.close(fig)
    picks = sorted({round(i) for i in np.linspace(0, len(frames) - 1, min(2 * STRIP_FRAMES, len(frames)))})
    _strip(os.path.join(out, "strip.png"), [(f"frame {i}", read_image(frames[i])) for i in picks])
    parts = [f"<h1>{len(frames)} frames</h1>", '<p><a href="../overlay.mp4">overlay video</a>, '
             '<a href="../masks/">masks</a></p>', '<img src="area.png" alt="object area over frames"><br>',
             '<img src="strip.png" alt="overlays">']
    return [os.path.join(out, "area.png"), os.path.join(out, "strip.png"),
            _page(os.path.join(out, "index.html"), "video results", parts)]


def _page(path: str, title: str, parts: list[str]) -> str:
    atomic_write(path, (f"<!doctype html><html><head><meta charset=utf-8><title>{html.escape(title)}</title>"
                        f"<style>{STYLE}</style></head><body>{''.join(parts)}</body></html>\n").encode("utf-8"))
    return path
