"""Evaluation runs: benchmarks or one video, into results folders each owned by one evaluation.

`evaluate()` is what `eval.py` runs: the model the checkpoint records, every sequence segmented
by `VideoSegmenter`, masks written by `ResultWriter` into a `ResultsFolder` (lock, record, list of
written files, --overwrite / --resume), then scored and tabulated.
"""
from __future__ import annotations

import argparse
import logging
import os
from dataclasses import dataclass

import numpy as np
import torch
from tqdm import tqdm

from config import MIN_FRAME_SIDE, Config, settings_record
from evaluation.benchmarks import (
    BENCHMARKS,
    FOLDER,
    PROBABILITIES,
    Benchmark,
    BenchmarkResult,
    check_scorable,
    mask_folder,
    scorable,
    score,
)
from evaluation.datasets import EvalSequence
from evaluation.metrics import write_csv
from evaluation.report import write_report, write_summary_page, write_video_report
from evaluation.results_folder import ResultsFolder, inside
from evaluation.sharding import on_every_rank, on_main_then_share, shares
from inference.results import ResultWriter
from inference.segmenter import VideoSegmenter
from networks.weights import load_lsta
from utils.checkpoint import CheckpointError, checkpoints_newest_first, read_checkpoint
from utils.distributed import DistInfo
from utils.errors import MissingFileError, SettingError, UserError
from utils.files import file_digest, write_json
from utils.image_io import DamagedVideoError, iter_video_frames, read_binary_mask, read_image, video_fps
from utils.precision import set_float32_precision
from utils.timing import SectionTimer

SETTINGS_RECORD = "config.json"  # the resolved settings, written when the evaluation has finished
log = logging.getLogger("lsta.eval")


@dataclass
class Job:
    """One benchmark (or `--video`) to run: its sequences and results folder."""
    bench: Benchmark | None
    sequences: list[EvalSequence]
    folder: ResultsFolder


# Settings a checkpoint's record supplies when the command line does not: the model's own window
# and the data it was trained beside (so `eval.py --ckpt_path log/toy/ckpt/save_step_300.pth`
# evaluates the toy model on the toy data, no preset needed).
RECORDED_EVAL_KEYS = ("MODEL_MAX_MEM", "DIR_DATA")


def resolve_checkpoint(cfg: Config, ckpt_path: str | None) -> tuple[str, str]:
    """(weights file, its tag for the results folder): --ckpt_path, else TEST_CKPT_PATH, else the
    newest checkpoint of EXP_NAME. The tag is step_<N> for this project's checkpoints, else the file's name.

    Keys of RECORDED_EVAL_KEYS that no preset or --opts set are taken from the checkpoint's record.
    """
    path = ckpt_path or cfg.TEST_CKPT_PATH
    if not path:
        found = checkpoints_newest_first(cfg.DIR_CKPT)
        if not found:
            raise CheckpointError(f"no checkpoint to evaluate: {cfg.DIR_CKPT} (EXP_NAME {cfg.EXP_NAME}) holds no "
                                  f"save_step_*.pth; train first, or pass --ckpt_path FILE (e.g. best_LSTA.pth, "
                                  f"the authors' weights)")
        path = found[0][1]
    try:
        ckpt = read_checkpoint(path, "LSTA weights", mmap=True)
    except CheckpointError as err:
        raise CheckpointError(f"{err}; the authors' released weights, best_LSTA.pth, go in the project root "
                              f"(eval.sh's default), or pass --ckpt_path to one of your log/<exp>/ckpt/*.pth") from None
    step = ckpt.get("step") if isinstance(ckpt, dict) else None
    tag = f"step_{step}" if isinstance(step, int) else os.path.splitext(os.path.basename(path))[0]
    recorded = ckpt.get("config") if isinstance(ckpt, dict) and isinstance(ckpt.get("config"), dict) else {}
    for key in RECORDED_EVAL_KEYS:
        if key in recorded and not cfg.given(key) and recorded[key] != getattr(cfg, key):
            log.info(f"{key} {recorded[key]!r} from {path}'s record (pass --opts {key} ... to override)")
            cfg.set(key, recorded[key])
    cfg.validate()
    return path, tag


def benchmarks_to_run(name: str, cfg: Config, root: str | None) -> list[tuple[Benchmark, str]]:
    """(benchmark, data root) pairs for --dataset NAME, `all` (those whose data is present) or `folder`."""
    if name == "folder":
        if not root:
            raise SettingError("--dataset folder needs --root DIR, the folder that holds the videos")
        return [(FOLDER, root)]
    if name == "all":
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


def results_name(bench: Benchmark, cfg: Config) -> str:
    """The results folder's name: the benchmark, with the split for DAVIS (davis2016-val)."""
    return f"{bench.name}-{cfg.TEST_DATASET_SPLIT}" if bench.name.startswith("davis") else bench.name


def run_benchmark(cfg: Config, segmenter: VideoSegmenter, job: Job, probabilities: bool, overlays: bool,
                  timer: SectionTimer) -> None:
    """Segment every sequence not done yet and write its masks (and probability maps, overlays)."""
    bench, out_dir = job.bench, job.folder.path
    todo = [s for s in job.sequences if s.name not in job.folder.done]
    if len(todo) < len(job.sequences):
        log.info(f"{bench.name}: resuming, {len(job.sequences) - len(todo)} sequences already done and verified")
    bar = tqdm(todo, desc=bench.name, dynamic_ncols=True)
    for seq in bar:
        folders = [mask_folder(bench, out_dir, seq.name), os.path.join(out_dir, PROBABILITIES, seq.name),
                   os.path.join(out_dir, "overlays", seq.name)]
        for folder in folders:  # names were checked when read; this guards every write
            if not inside(folder, out_dir):
                raise UserError(f"refusing to write {folder}: it lies outside the results folder {out_dir}")
        writer = ResultWriter(folders[0], folders[1] if probabilities else None, folders[2] if overlays else None)
        names = seq.frame_names if seq.images else None
        try:
            for frame in segmenter.segment(seq.video or seq.images, name=f"{bench.name} sequence {seq.name!r}"):
                name = names[frame.index] if names else f"{frame.index:05d}"
                mask = None
                if frame.index == 0 and cfg.TEST_COPY_FIRST_FRAME_GT and name in seq.annotations:
                    mask = read_binary_mask(seq.annotations[name]).astype(np.uint8)  # the authors' copy, by request
                writer.write(name, frame, mask)
                timer.frames += 1
        finally:
            writer.close()
        job.folder.add_files(writer.written, done=seq.name)
        bar.set_postfix(frames=timer.frames)


def run_video(segmenter: VideoSegmenter, video: str, folder: ResultsFolder, max_side: int | None,
              accept_partial: bool, timer: SectionTimer) -> list[str]:
    """Masks, overlays, an overlay .mp4 and a report for a video file or a folder of frames; returns the report's files."""
    out_dir = folder.path
    writer = ResultWriter(os.path.join(out_dir, "masks"), overlays=os.path.join(out_dir, "overlays"),
                          video=os.path.join(out_dir, "overlay.mp4"), fps=video_fps(video))
    bar = tqdm(desc=os.path.basename(video.rstrip("/")), unit="frame", dynamic_ncols=True)
    areas: list[float] = []  # the object's share of each frame, for the report
    try:
        for frame in segmenter.segment(video, max_side, accept_partial):
            writer.write(f"{frame.index:05d}", frame)
            areas.append(float(frame.mask.mean()))
            timer.frames += 1
            bar.update(1)
    finally:
        bar.close()
        writer.close()
        folder.add_files(writer.written)
        log.info(f"wrote {timer.frames} masks to {out_dir}/masks, overlays to {out_dir}/overlays and "
                 f"{out_dir}/overlay.mp4")
    overlays = [os.path.join(out_dir, "overlays", f"{i:05d}.jpg") for i in range(len(areas))]
    return write_video_report(out_dir, overlays, areas) if areas else []


def warm_up_for_video(segmenter: VideoSegmenter, video: str, max_side: int | None) -> None:
    """An untimed pass at the video's frame size, the size cuDNN autotuning and TEST_COMPILE specialise
    on; whatever is wrong with the video is left for the run itself to report."""
    blank = np.zeros((64, 64, 3), np.uint8)
    try:
        first = next(iter_video_frames(video, max_side, accept_partial=True), None)
        segmenter.warm_up(first if first is not None else blank)
    except UserError:
        segmenter.warm_up(blank)


def report_speed(timer: SectionTimer, device: torch.device, precision: str, views: int) -> None:
    """Frames/s of the model alone, split into encoder and head, with the conditions measured under."""
    n = max(timer.frames, 1)
    enc, head, post = (timer.seconds.get(k, 0.0) for k in ("encoder", "head", "post"))
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else f"CPU, {torch.get_num_threads()} threads"
    log.info(f"speed over {timer.frames} frames ({precision}, {views} view{'s' if views > 1 else ''} per frame, "
             f"{device} [{name}]): encoder {1000 * enc / n:.1f} ms/frame, head {1000 * head / n:.1f} ms/frame, "
             f"inference {n / max(enc + head, 1e-9):.2f} FPS; resize+argmax to original size "
             f"{1000 * post / n:.1f} ms/frame (not in FPS)")


def _mode(args: argparse.Namespace) -> str:
    if args.overwrite and args.resume:
        raise SettingError("--overwrite and --resume exclude each other: redo the evaluation, or finish it")
    return "overwrite" if args.overwrite else "resume" if args.resume else "new"


def score_only(cfg: Config, args: argparse.Namespace) -> list[BenchmarkResult]:
    """Score existing results of one benchmark (--score_only RESULTS_DIR)."""
    chosen = benchmarks_to_run(args.dataset or cfg.TEST_DATASET, cfg, args.root)
    if len(chosen) != 1:
        raise SettingError("--score_only scores one benchmark: name it with --dataset")
    bench, root = chosen[0]
    bench = scorable(bench, sequences := bench.read(cfg, root))
    if bench.metrics == "none" and not args.saliency:
        raise SettingError(f"--score_only: {bench.name} has nothing to score here ({bench.label}); its masks are "
                           f"meant for upload or for looking at")
    if not os.path.isdir(args.score_only):
        raise MissingFileError(f"--score_only: results folder {args.score_only} not found")
    result = score(bench, sequences, args.score_only, cfg.TEST_DATASET_SPLIT, args.saliency)
    log.info(f"report: {write_report(bench, sequences, result, args.score_only)[-1]}")
    return [result]


def evaluate(cfg: Config, args: argparse.Namespace, world: DistInfo) -> list[BenchmarkResult]:
    """Run eval.py's command: benchmarks (--dataset) or one video (--video), then score and tabulate.

    Under torchrun (`world` of several processes) each rank segments its share of the sequences
    (evaluation/sharding.py); rank 0 owns the results folders and writes the tables. Returns the
    scored benchmarks (on rank 0; nothing for --video and on the other ranks).
    """
    if args.max_side is not None and args.max_side < MIN_FRAME_SIDE:
        raise SettingError(f"--max_side {args.max_side} is below {MIN_FRAME_SIDE}, the smallest frame side the "
                           f"network accepts")
    if world.world_size > 1 and (args.score_only or args.video):
        raise SettingError("--score_only and --video run in one process: start eval.py without torchrun")
    if args.score_only:
        return score_only(cfg, args)
    mode = _mode(args)
    ckpt_path, tag = resolve_checkpoint(cfg, args.ckpt_path)
    chosen = [] if args.video else benchmarks_to_run(args.dataset or cfg.TEST_DATASET, cfg, args.root)
    data = []
    for bench, root in chosen:  # everything read and checked before any model work
        sequences = bench.read(cfg, root)
        bench = scorable(bench, sequences)
        check_scorable(bench, sequences)
        data.append((bench, sequences, root))
    device = world.device
    precision = (set_float32_precision(cfg.DEVICE_ALLOW_TF32 or cfg.TEST_PRECISION == "tf32")
                 if device.type == "cuda" else "float32")
    # Frame sizes are fixed within a video: cuDNN's autotuner picks each size's fastest kernels once.
    torch.backends.cudnn.benchmark = device.type == "cuda"
    if cfg.TEST_PRECISION in ("bf16", "fp16"):
        precision = f"{cfg.TEST_PRECISION} autocast"
    if args.video:
        places = [(args.out or os.path.join(cfg.DIR_EVALUATION, os.path.basename(args.video.rstrip("/")), tag),
                   [args.video])]
    elif len(data) == 1:
        places = [(args.out or os.path.join(cfg.DIR_EVALUATION, results_name(data[0][0], cfg), tag), [data[0][2]])]
    else:
        places = [(os.path.join(args.out or cfg.DIR_EVALUATION, results_name(b, cfg), tag), [root])
                  for b, _, root in data]
    folders = [ResultsFolder(path, sources) for path, sources in places]
    for folder in folders:  # refuse a wrong --out before the (slow) model load
        folder.check_place()
    log.info(f"evaluating {ckpt_path} ({tag}); results in {', '.join(f.path for f in folders)}")
    model, _ = load_lsta(ckpt_path, cfg)
    timer = SectionTimer(device)
    def build() -> VideoSegmenter:
        return VideoSegmenter.from_config(model, cfg, device, timer.measure)

    # Rank 0 builds first: with TEST_BACKEND onnxruntime it makes a missing export once, and the
    # other ranks, waiting here, then find it in the cache instead of exporting the same weights.
    main_built: list[VideoSegmenter] = []
    on_main_then_share(world, lambda: main_built.append(build()))
    segmenter = main_built[0] if main_built else build()
    precision = f"{precision}, {segmenter.backend.name} backend"
    record = {"checkpoint": ckpt_path, "checkpoint_sha256": file_digest(ckpt_path), "settings": cfg.to_dict(),
              "model": model.args.to_record(), "backend": segmenter.backend.name}
    if args.video:
        folder = folders[0]
        folder.open(mode if mode != "resume" else "overwrite", {**record, "benchmark": "video", "video": args.video})
        try:
            warm_up_for_video(segmenter, args.video, args.max_side)
            try:
                pages = run_video(segmenter, args.video, folder, args.max_side, args.accept_partial_video, timer)
            except DamagedVideoError as err:
                raise DamagedVideoError(f"{err}; to keep them, rerun with --accept_partial_video --resume") from None
            _finish(cfg, folder, ckpt_path, "video", pages)
        finally:
            folder.close()
        log.info(f"overlay video: {os.path.join(folder.path, 'overlay.mp4')}")
        log.info(f"report: {pages[-1] if pages else 'none (no frame decoded)'}")
        report_speed(timer, device, precision, len(segmenter.views))
        return []
    results: list[BenchmarkResult] = []
    reports: dict[str, str] = {}  # benchmark → its report page
    for (bench, sequences, _), folder in zip(data, folders):
        masks_of = {s.name: [os.path.join(mask_folder(bench, folder.path, s.name), n + ".png") for n in s.frame_names]
                    for s in sequences if s.images}
        # Rank 0 takes the folder (lock, record, --overwrite/--resume); every rank learns what is done.
        done = on_main_then_share(world, lambda: sorted(folder.open(mode, {**record, "benchmark": bench.name},
                                                                    masks_of)))
        folder.join(set(done))
        mine = shares([s for s in sequences if s.name not in folder.done], world.world_size)[world.rank]
        try:
            if timer.frames == 0 and mine and mine[0].images:
                segmenter.warm_up(read_image(mine[0].images[0]))
            saliency = args.saliency or bench.metrics == "saliency"
            on_every_rank(world, lambda: run_benchmark(cfg, segmenter, Job(bench, mine, folder),
                                                       saliency or args.save_probs, args.overlays, timer))
            if not world.is_main:
                continue
            result = score(bench, sequences, folder.path, cfg.TEST_DATASET_SPLIT, args.saliency)
            pages = write_report(bench, sequences, result, folder.path)
            reports[bench.name] = pages[-1]
            _finish(cfg, folder, ckpt_path, bench.name, [os.path.join(folder.path, f) for f in result.files] + pages)
        finally:
            folder.close()
        results.append(result)
        log.info(f"{bench.name}: results{' and ' + ', '.join(result.files) if result.files else ''} in {folder.path}; "
                 f"report: {reports[bench.name]}")
    report_speed(timer, device, precision, len(segmenter.views))
    if not world.is_main:
        return []
    if len(results) > 1:
        summary = os.path.join(args.out or cfg.DIR_EVALUATION, f"summary-{tag}.csv")
        write_csv(summary, ["benchmark", "measure", "figure", "value"],
                  [{"benchmark": r.name, "measure": r.label, "figure": k, "value": v}
                   for r in results for k, v in r.headline.items()])
        page = write_summary_page(os.path.join(args.out or cfg.DIR_EVALUATION, f"summary-{tag}.html"), results,
                                  reports)
        log.info(f"summary: {summary} and {page}")
    return results


def _finish(cfg: Config, folder: ResultsFolder, ckpt_path: str, benchmark: str, files: list[str]) -> None:
    """Record the tables, report and settings file as written, then mark the evaluation complete."""
    settings = os.path.join(folder.path, SETTINGS_RECORD)
    write_json(settings, settings_record(cfg, checkpoint=ckpt_path, benchmark=benchmark))
    folder.add_files(files + [settings])
    folder.complete()
