"""A benchmark run: segment every sequence of one or more benchmarks into results folders, score, tabulate.

    results = evaluate_benchmarks(cfg, BenchmarkRun("davis2016"), checkpoint, world)

Everything is read and checked before the model loads; each benchmark's results folder is owned
by this evaluation (evaluation/results_folder.py); under torchrun each rank segments its share of
the sequences (evaluation/sharding.py) and rank 0 scores. `--dataset all` adds a summary, in a
results folder of its own (`summary-<tag>/`), owned by the same rules.
"""
from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass

import numpy as np
from tqdm import tqdm

from config import Config
from evaluation.benchmarks import (
    BENCHMARKS,
    FOLDER,
    Benchmark,
    BenchmarkResult,
    DatasetOptions,
    check_scorable,
    mask_folder,
    scorable,
    score,
)
from evaluation.datasets import EvalSequence
from evaluation.evaluators import EVALUATORS
from evaluation.evaluators.saliency import PROBABILITIES
from evaluation.metrics import write_csv
from evaluation.options import BenchmarkRun, ScoreOnlyRun
from evaluation.report import write_report, write_summary_page
from evaluation.results_folder import RECORD, ResultsFolder, inside, refuse_run_folder
from evaluation.session import EvalSession
from evaluation.sharding import on_every_rank, on_main_then_share, shares
from inference.backends.quantization import CALIBRATION_FRAMES
from inference.checkpoint_settings import ChosenCheckpoint
from inference.results import ResultWriter, default_write_threads, segment_videos_and_write
from inference.segmenter import SegmentedFrame, VideoInput
from utils.distributed import DistInfo
from utils.errors import MissingFileError, SettingError, UserError
from utils.image_io import frame_count, iter_video_frames, read_binary_mask, read_image
from utils.spacing import evenly_spaced

log = logging.getLogger("lsta.eval")
SUMMARY = "summary"


@dataclass
class BenchmarkData:
    """One benchmark to run: its entry, its sequences (read and checked), its data root."""
    bench: Benchmark
    sequences: list[EvalSequence]
    root: str


def dataset_options(cfg: Config) -> DatasetOptions:
    """What the benchmarks' readers take from the settings."""
    return DatasetOptions(cfg.TEST_DATASET_SPLIT, cfg.TEST_DATASET_FULL_RESOLUTION)


def benchmarks_to_run(name: str, cfg: Config, root: str | None) -> list[tuple[Benchmark, str]]:
    """(benchmark, data root) pairs for --dataset NAME, `all` (those whose data is present) or `folder`."""
    if name == "folder":
        if not root:
            raise SettingError("--dataset folder needs --root DIR, the folder that holds the videos")
        return [(FOLDER, root)]
    if name == "all":
        if root:
            raise SettingError("--root names one benchmark's data: with --dataset all, set each one's DIR_* key")
        chosen = [(b, getattr(cfg, b.root_key)) for b in BENCHMARKS.values()]
        for bench, path in chosen:
            if not os.path.isdir(path):
                log.info(f"skipping {bench.name}: {bench.root_key} {path} not found")
        chosen = [(b, p) for b, p in chosen if os.path.isdir(p)]
        if not chosen:
            raise MissingFileError("no benchmark data found (see data/README.md for where each goes)")
        return chosen
    if name not in BENCHMARKS:
        raise SettingError(f"--dataset {name!r}: choose from {', '.join(list(BENCHMARKS) + ['all', 'folder'])}")
    bench = BENCHMARKS[name]
    return [(bench, root or getattr(cfg, bench.root_key))]


def read_benchmarks(cfg: Config, dataset: str, root: str | None) -> list[BenchmarkData]:
    """Every benchmark of `dataset`, its sequences read and checked scorable (before any model work)."""
    data = []
    for bench, path in benchmarks_to_run(dataset, cfg, root):
        sequences = bench.read(path, dataset_options(cfg))
        bench = scorable(bench, sequences)
        check_scorable(bench, sequences)
        data.append(BenchmarkData(bench, sequences, path))
    return data


def calibration_frames(sequences: list[EvalSequence]) -> list[np.ndarray]:
    """int8's calibration on the benchmark itself: CALIBRATION_FRAMES frames spread evenly over its first sequences
    (a few of each, evenly spaced in it), so that the ranges measured cover more than one scene."""
    chosen = sequences[:CALIBRATION_FRAMES]
    each = -(-CALIBRATION_FRAMES // len(chosen))
    frames: list[np.ndarray] = []
    for seq in chosen:
        count = len(seq.images) if seq.images else (frame_count(seq.video) or each)
        picks = evenly_spaced(count, each)
        if seq.images:
            frames += [read_image(seq.images[i]) for i in picks]
        else:
            frames += [f for i, f in enumerate(iter_video_frames(seq.video, accept_partial=True)) if i in picks]
    return frames[:CALIBRATION_FRAMES]


def results_name(bench: Benchmark, split: str) -> str:
    """The results folder's name: the benchmark, with the split for DAVIS (davis2016-val)."""
    return f"{bench.name}-{split}" if bench.name.startswith("davis") else bench.name


def segment_sequences(session: EvalSession, bench: Benchmark, sequences: list[EvalSequence], folder: ResultsFolder,
                      run: BenchmarkRun) -> None:
    """Segment every sequence not done yet and write its masks (and probability maps, overlays), TEST_VIDEOS_IN_FLIGHT
    sequences at a time; each is recorded done once its files are written."""
    out_dir = folder.path
    todo = [s for s in sequences if s.name not in folder.done]
    if len(todo) < len(sequences):
        log.info(f"{bench.name}: resuming, {len(sequences) - len(todo)} sequences already done and verified")
    probabilities = run.save_probs or run.saliency or EVALUATORS[bench.evaluator].reads_probabilities
    copy_first_gt = session.cfg.TEST_COPY_FIRST_FRAME_GT
    writers: dict[str, ResultWriter] = {}  # the sequences in flight, for the results folder's record of files

    def writer_for(video: VideoInput) -> ResultWriter:
        seq = video.key
        folders = [mask_folder(bench, out_dir, seq.name), os.path.join(out_dir, PROBABILITIES, seq.name),
                   os.path.join(out_dir, "overlays", seq.name)]
        for place in folders:  # names were checked when read; this guards every write
            if not inside(place, out_dir):
                raise UserError(f"refusing to write {place}: it lies outside the results folder {out_dir}")
        writers[seq.name] = ResultWriter(folders[0], folders[1] if probabilities else None,
                                         folders[2] if run.overlays else None,
                                         threads=default_write_threads(session.segmenter.device))
        return writers[seq.name]

    def first_frame_truth(video: VideoInput, frame: SegmentedFrame) -> np.ndarray | None:
        seq = video.key  # the authors' copy of frame 0's ground truth, by request
        if copy_first_gt and frame.index == 0 and frame.name in seq.annotations:
            return read_binary_mask(seq.annotations[frame.name]).astype(np.uint8)
        return None

    videos = [VideoInput(s.video or s.images, name=f"{bench.name} sequence {s.name!r}", key=s) for s in todo]
    frames = None if any(s.video for s in todo) else sum(len(s.images) for s in todo)  # videos: not counted ahead
    bar = tqdm(total=frames, desc=bench.name, unit="frame", dynamic_ncols=True)
    try:
        for video, frame in segment_videos_and_write(session.segmenter, videos, writer_for, first_frame_truth):
            if frame is None:  # its files are written
                folder.add_files(writers.pop(video.key.name).written, done=video.key.name)
                continue
            session.timer.frames += 1
            bar.update(1)
    finally:
        bar.close()
        for writer in writers.values():  # sequences cut short: their files are the folder's to delete, not done
            folder.add_files(writer.written)


def evaluate_benchmarks(cfg: Config, run: BenchmarkRun, checkpoint: ChosenCheckpoint,
                        world: DistInfo) -> list[BenchmarkResult]:
    """Segment, score and report every benchmark of `run`; the scored results (on rank 0; [] on the others)."""
    data = read_benchmarks(cfg, run.dataset, run.root)
    tag, split = checkpoint.tag, cfg.TEST_DATASET_SPLIT
    if run.dataset == "all":
        base = run.out or cfg.DIR_EVALUATION
        refuse_run_folder(base)
        places = [os.path.join(base, results_name(d.bench, split), tag) for d in data]
    else:
        places = [run.out or os.path.join(cfg.DIR_EVALUATION, results_name(data[0].bench, split), tag)]
    folders = [ResultsFolder(path, [d.root]) for path, d in zip(places, data)]
    summary = ResultsFolder(os.path.join(base, f"{SUMMARY}-{tag}"), [d.root for d in data]) \
        if run.dataset == "all" else None
    for folder in folders + ([summary] if summary else []):  # refuse a wrong --out before the (slow) model load
        folder.check_place()
        folder.check_mode("overwrite" if folder is summary and run.mode == "resume" else run.mode)
    log.info(f"evaluating {checkpoint.path} ({tag}); results in {', '.join(f.path for f in folders)}")
    session = EvalSession.start(cfg, checkpoint, world, lambda: calibration_frames(data[0].sequences))
    results: list[BenchmarkResult] = []
    reports: dict[str, str] = {}  # benchmark → its report page
    for item, folder in zip(data, folders):
        result = _run_one(session, item, folder, run, world)
        if result is not None:
            results.append(result)
            reports[item.bench.name] = os.path.join(folder.path, "report", "index.html")
    session.report_speed()
    if not world.is_main:
        return []
    if summary is not None and len(results) > 1:
        _write_summary(session, summary, results, reports, run.mode)
    return results


def _run_one(session: EvalSession, item: BenchmarkData, folder: ResultsFolder, run: BenchmarkRun,
             world: DistInfo) -> BenchmarkResult | None:
    """One benchmark: take its folder, segment this rank's share, then (rank 0) score and report."""
    bench, sequences, split = item.bench, item.sequences, session.cfg.TEST_DATASET_SPLIT
    masks_of = {s.name: [os.path.join(mask_folder(bench, folder.path, s.name), n + ".png") for n in s.frame_names]
                for s in sequences if s.images}
    # Rank 0 takes the folder (lock, record, --overwrite/--resume); every rank learns what is done.
    record = session.record(benchmark=bench.name)
    done = on_main_then_share(world, lambda: sorted(folder.open(run.mode, record, masks_of)))
    folder.join(set(done))
    mine = shares([s for s in sequences if s.name not in folder.done], world.world_size)[world.rank]
    try:
        if session.timer.frames == 0 and mine and mine[0].images:
            session.segmenter.warm_up(read_image(mine[0].images[0]))
        on_every_rank(world, lambda: segment_sequences(session, bench, mine, folder, run))
        if not world.is_main:
            return None
        result = score(bench, sequences, folder.path, split, run.saliency)
        pages = write_report(bench, sequences, result, folder.path, session.precision)
        session.finish(folder, bench.name, [os.path.join(folder.path, f) for f in result.files] + pages)
    finally:
        folder.close()
    log.info(f"{bench.name}: results{' and ' + ', '.join(result.files) if result.files else ''} in {folder.path}; "
             f"report: {pages[-1]}")
    earlier = previous_evaluation(folder.path)
    if earlier and EVALUATORS[bench.evaluator].writes_frame_j:
        log.info(f"{bench.name}: compare with the evaluation before it: python eval.py --compare {earlier} "
                 f"{folder.path}")
    return result


def previous_evaluation(folder: str) -> str | None:
    """The newest other complete evaluation beside `folder` (another checkpoint of the same benchmark), if any."""
    parent, found = os.path.dirname(os.path.normpath(folder)), []
    for name in os.listdir(parent):
        path = os.path.join(parent, name)
        if os.path.normpath(path) == os.path.normpath(folder) or not os.path.isfile(os.path.join(path, RECORD)):
            continue
        try:
            with open(os.path.join(path, RECORD)) as f:
                record = json.load(f)
        except (OSError, ValueError):
            continue
        if record.get("status") == "complete" and isinstance(record.get("finished"), (int, float)):
            found.append((record["finished"], path))
    return max(found)[1] if found else None


def _write_summary(session: EvalSession, summary: ResultsFolder, results: list[BenchmarkResult],
                   reports: dict[str, str], mode: str) -> None:
    """The headline figures of every benchmark, as a CSV and a page, in the summary's own results folder."""
    summary.open("overwrite" if mode == "resume" else mode, session.record(benchmark="all"))
    try:
        csv_path = os.path.join(summary.path, "summary.csv")
        write_csv(csv_path, ["benchmark", "measure", "figure", "value"],
                  [{"benchmark": r.name, "measure": r.label, "figure": k, "value": v}
                   for r in results for k, v in r.headline.items()])
        page = write_summary_page(os.path.join(summary.path, "index.html"), results, reports)
        session.finish(summary, "all", [csv_path, page])
    finally:
        summary.close()
    log.info(f"summary: {csv_path} and {page}")


def score_only(cfg: Config, run: ScoreOnlyRun) -> list[BenchmarkResult]:
    """Score existing results of one benchmark (--score_only RESULTS_DIR)."""
    chosen = benchmarks_to_run(run.dataset, cfg, run.root)
    if len(chosen) != 1:
        raise SettingError("--score_only scores one benchmark: name it with --dataset")
    bench, root = chosen[0]
    sequences = bench.read(root, dataset_options(cfg))
    bench = scorable(bench, sequences)
    if bench.evaluator == "none" and not run.saliency:
        raise SettingError(f"--score_only: {bench.name} has nothing to score here ({bench.label}); its masks are "
                           f"meant for upload or for looking at")
    if not os.path.isdir(run.results):
        raise MissingFileError(f"--score_only: results folder {run.results} not found")
    refuse_run_folder(run.results)
    result = score(bench, sequences, run.results, cfg.TEST_DATASET_SPLIT, run.saliency)
    log.info(f"report: {write_report(bench, sequences, result, run.results)[-1]}")
    return [result]
