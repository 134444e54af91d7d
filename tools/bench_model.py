"""Per-frame cost of LSTA's streaming inference (encoder + head) at 481×849, and its memory.

    python -m tools.bench_model [--device cpu|cuda] [--backbone resnet101] [--windows 11 41]
                                [--batches 1 2 4] [--memory_frames 100 1000]
    python -m tools.bench_model --only backends      # the CPU backend table alone
    python -m tools.bench_model --only sta           # STA alone, ours against the authors' unfold/fold
    python -m tools.bench_model --only pipeline --pipeline_frames 300   # the streaming pipeline alone
    python -m tools.bench_model --only pipeline --checkpoint CKPT --frames FOLDER  # agreement, trained weights
    python -m tools.bench_model --only pipeline --pipeline_frames 600 --pipeline_videos 4  # videos in flight
    python -m tools.bench_model --only costs         # encoder, head, STA, multi-scale and memory

- backends (CPU): one streamed frame at window 11 (encoder + head), run by VideoSegmenter's parts
  for each TEST_BACKEND (torch, onnxruntime) and for bf16 with channels-last (torch), at 1 and 2
  threads, on a quiet machine and beside a busy process on the same cores (a matmul loop the tool
  starts and stops), against the authors' way in the same process (as we read their code: torch
  encoder whose decoder upsamples the ASPP map before convolving, head re-projecting its memory,
  STA by unfold and fold); and the encoder's and the head's achieved GFLOP/s against this CPU's
  float32 matmul rate measured in the same process;
- encoder: ms per frame when frames are encoded in batches of 1, 2, 4 (TEST_ENCODE_BATCH), and
  the peak memory of each batch size (each in its own process);
- head: ms per query frame with a window of 11 (the authors') and 41 frames, cached as
  VideoSegmenter runs it, and re-projecting every memory frame as the authors' code does (their STA);
- pipeline: frames/s of a 480x854 JPEG folder (or --frames) streamed through VideoSegmenter and
  ResultWriter as eval.py runs it (decode, preprocessing, model, resize and mask PNG writing
  overlapped), then in a second pass of the model alone (each call synchronised),
  and as the authors timed it (as we read their test script: no synchronisation, the encoding of
  frames 0..M-2 not counted), for
  each precision (on CPU each backend too; channels-last encoder; on CUDA also bf16 with
  TEST_COMPILE True and cudagraphs, compiled in the untimed warm-up), with the share of mask pixels
  equal to float32's;
- per-frame streaming cost = encoder (batch 1 on CPU, 4 on GPU) + head, for the plain views and
  for test-time flip and multi-scale (0.75, 1, 1.25);
- memory: peak RSS of a process that streams 100 and 1,000 frames through VideoSegmenter (the
  toy model at 120×216: the engine's state, not the backbone's, is what could grow).
Timings are medians after a warm-up, CUDA-synchronised; random weights (the speed is the same).
"""
from __future__ import annotations

import argparse
import functools
import json
import os
import statistics

import torch

from config import Config
from dataloaders.transforms import eval_size
from inference.segmenter import default_encode_batch
from networks.lsta import LSTA
from networks.reference import authors_encode, authors_segment, authors_sta
from tools.harness import (
    ROOT,
    busy_neighbour,
    cpu_description,
    run_cell,
    samples_in_turn,
    timed,
    timed_in_turn,
)
from utils.timing import peak_memory_mb


def model_for(backbone: str, device: str) -> LSTA:
    cfg = Config()
    cfg.set("MODEL_BACKBONE", backbone)
    torch.manual_seed(0)
    return LSTA.from_config(cfg).to(device).eval()


def sta_costs(height: int, width: int, device: str, repeats: int) -> dict:
    """ms of STA at the stride-4 feature size, ours and the authors' (unfold/fold), forward and forward + backward."""
    from networks.sta import STA
    sta = STA().to(device)
    size = (1, 16, (height + 3) // 4, (width + 3) // 4)
    query, key = (torch.randn(size, device=device, requires_grad=True) for _ in range(2))

    def train_step(fn):
        fn(query, key).sum().backward()

    ways = {"ours": sta, "authors": authors_sta}
    with torch.no_grad():
        forward = timed_in_turn({name: functools.partial(fn, query, key) for name, fn in ways.items()}, device,
                                max(repeats, 5))
    train = timed_in_turn({name: functools.partial(train_step, fn) for name, fn in ways.items()}, device,
                          max(repeats, 5))
    return {name: {"forward_ms": 1000 * forward[name], "train_ms": 1000 * train[name]} for name in ways}


def print_sta(args: argparse.Namespace) -> None:
    """One line: STA's cost against the authors' (sta_costs)."""
    sta = sta_costs(args.height, args.width, args.device, args.repeats)
    ours, theirs = sta["ours"], sta["authors"]
    print(f"STA at {(args.height + 3) // 4}x{(args.width + 3) // 4}: forward {ours['forward_ms']:.1f} ms vs the "
          f"authors' unfold/fold {theirs['forward_ms']:.1f} ms (x{ours['forward_ms'] / theirs['forward_ms']:.2f}); "
          f"forward + backward {ours['train_ms']:.1f} vs {theirs['train_ms']:.1f} ms "
          f"(x{ours['train_ms'] / theirs['train_ms']:.2f})", flush=True)


def encoder_cost(args: argparse.Namespace, batch: int) -> dict:
    """ms per frame encoding `batch` frames per call (run in its own process for its peak memory)."""
    model = model_for(args.backbone, args.device)
    images = torch.randn(batch, 3, args.height, args.width, device=args.device)
    with torch.inference_mode():
        seconds = timed(lambda: model.cache_frames(model.encode(images)), args.device, args.repeats)
    return {"batch": batch, "ms_per_frame": 1000 * seconds / batch, "peak_mb": peak_memory_mb(args.device)}


def head_costs(model: LSTA, height: int, width: int, windows: list[int], device: str, repeats: int) -> dict:
    """ms per query frame for each window: cached (VideoSegmenter's way) and re-projecting (the authors')."""
    out = {}
    with torch.inference_mode():
        features = model.encode(torch.randn(1, 3, height, width, device=device))
        for size in windows:
            memory = [features.clone() for _ in range(size - 1)]
            caches = [model.cache_frames(f) for f in memory]

            def cached_step():
                query = model.cache_frames(features)  # the new frame is projected once
                return model.segment_cached(query, caches[:-1], caches[-1])

            seconds = timed_in_turn({"cached": cached_step, "authors": lambda: authors_segment(
                model, features, memory[:-1], memory[-1])}, device, repeats)
            out[size] = {"cached_ms": 1000 * seconds["cached"], "authors_ms": 1000 * seconds["authors"]}
    return out


def flops_of(fn) -> float:
    """Floating-point operations of one call of `fn` (torch's counter: convolutions and matmuls)."""
    from torch.utils.flop_counter import FlopCounterMode
    with FlopCounterMode(display=False) as counter:
        fn()
    return float(counter.get_total_flops())


def matmul_gflops(repeats: int) -> float:
    """This process's float32 matmul rate at its thread count (2048² operands)."""
    a, b = torch.randn(2048, 2048), torch.randn(2048, 2048)
    return 2 * 2048 ** 3 / timed(lambda: a @ b, "cpu", max(repeats, 5)) / 1e9


# The ways of running a frame on a CPU that the backend table compares: InferenceOptions for each.
CPU_WAYS = {"torch": dict(backend="torch"), "onnxruntime": dict(backend="onnxruntime"),
            "onnxruntime int8": dict(backend="onnxruntime", precision="int8"),
            "torch bf16 channels-last": dict(backend="torch", precision="bf16", channels_last=True)}


def smooth_frames(height: int, width: int, count: int) -> list:
    """`count` BGR frames of a smooth scene panning right (int8's calibration, as a video would give it)."""
    import cv2
    import numpy as np
    base = cv2.resize(np.random.RandomState(0).randint(0, 255, (30, 54, 3)).astype(np.uint8), (width, height))
    return [np.roll(base, 4 * t, axis=1) for t in range(count)]


def stream_cost(args: argparse.Namespace, way: str) -> dict:
    """ms of one streamed frame at window 11 on the CPU run `way` (CPU_WAYS), and the authors' way (own process)."""
    from inference.segmenter import InferenceOptions, VideoSegmenter
    model = model_for(args.backbone, "cpu")
    segmenter = VideoSegmenter(model, InferenceOptions(window=args.windows[0], onnx_cache=args.onnx_cache,
                                                       **CPU_WAYS[way]), "cpu")
    segmenter.calibrate(smooth_frames(args.height, args.width, 8))  # int8 only: its quantization, untimed
    images = torch.randn(1, 3, args.height, args.width)

    def encode():
        with segmenter.precision():
            return model.cache_frames(segmenter.encode(images))

    def head():
        with segmenter.precision():
            return segmenter.step(query, caches[:-1], caches[-1])

    with torch.inference_mode():
        memory = [model.encode(images) for _ in range(args.windows[0] - 1)]
        query, caches = encode(), [encode() for _ in memory]
        samples = samples_in_turn({"encoder": encode, "head": head, "authors": lambda: authors_segment(
            model, authors_encode(model, images), memory[:-1], memory[-1])}, "cpu", args.repeats)
        encoder_s, head_s, authors = (statistics.median(samples[name]) for name in ("encoder", "head", "authors"))
        # Ours over the authors' within each repeat: how far one run's ratio can stray on this machine.
        ratios = [(e + h) / a for e, h, a in zip(samples["encoder"], samples["head"], samples["authors"])]
        encoder_flops = flops_of(lambda: model.encode(images))
        head_flops = flops_of(lambda: model.segment_cached(query, caches[:-1], caches[-1]))
    return {"way": way, "threads": torch.get_num_threads(), "encoder_ms": 1000 * encoder_s,
            "head_ms": 1000 * head_s, "authors_ms": 1000 * authors, "encoder_gflop": encoder_flops / 1e9,
            "head_gflop": head_flops / 1e9, "matmul_gflops": matmul_gflops(args.repeats),
            "ratio_range": [min(ratios), max(ratios)]}


def backend_table(args: argparse.Namespace) -> None:
    """The CPU table: each way of CPU_WAYS × 1/2 threads × quiet/contended, each cell in its own process."""
    from inference.backends.onnxruntime_backend import OnnxRuntimeBackend
    from inference.options import InferenceOptions
    model = model_for(args.backbone, "cpu")
    # Exported once, outside the timings.
    OnnxRuntimeBackend(model, InferenceOptions(onnx_cache=args.onnx_cache), torch.device("cpu"))
    print(f"CPU: {cpu_description()}")
    print("| load | threads | way | encoder ms | head ms | frame ms | authors' frame ms | ours/authors (per repeat) | "
          "encoder GFLOP/s | head GFLOP/s | matmul GFLOP/s |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for load in ("quiet", "busy"):
        for threads in (1, 2):
            busy = busy_neighbour(threads) if load == "busy" else None
            try:
                for way in args.ways or CPU_WAYS:
                    r = in_subprocess("--stream_run", way, args, threads)
                    frame = r["encoder_ms"] + r["head_ms"]
                    print(f"| {load} | {threads} | {way} | {r['encoder_ms']:.0f} | {r['head_ms']:.0f} | "
                          f"{frame:.0f} | {r['authors_ms']:.0f} | {frame / r['authors_ms']:.2f} "
                          f"({r['ratio_range'][0]:.2f}-{r['ratio_range'][1]:.2f}) | "
                          f"{r['encoder_gflop'] / r['encoder_ms'] * 1000:.0f} | "
                          f"{r['head_gflop'] / r['head_ms'] * 1000:.0f} | {r['matmul_gflops']:.0f} |", flush=True)
            finally:
                if busy is not None:
                    busy.kill()
                    busy.wait()
    print(f"encoder {r['encoder_gflop']:.0f} GFLOP, head {r['head_gflop']:.1f} GFLOP per frame "
          f"({args.height}x{args.width}, window {args.windows[0]})")


def pipeline_options(device: str) -> list[dict]:
    """InferenceOptions worth timing on `device` (on a CPU, compiling takes a minute and loses to onnxruntime)."""
    if device == "cuda":
        plain = [dict(precision=p, backend="torch") for p in ("float32", "tf32", "bf16", "fp16")]
        return plain + [dict(precision="bf16", backend="torch", channels_last=True),
                        dict(precision="bf16", backend="torch", compile=True),
                        dict(precision="bf16", backend="torch", channels_last=True, compile=True),
                        dict(precision="bf16", backend="torch", compile="cudagraphs"),
                        dict(precision="bf16", backend="torch", channels_last=True, compile="cudagraphs")]
    return [dict(precision="float32", backend="torch"), dict(precision="float32", backend="torch", channels_last=True),
            dict(precision="float32", backend="onnxruntime"), dict(precision="bf16", backend="torch"),
            dict(precision="bf16", backend="torch", channels_last=True)]


def pipeline_table(args: argparse.Namespace) -> None:
    """Frames/s of the whole pipeline (decode, model, resize, mask PNG writing) and of the model alone."""
    import tempfile

    import cv2
    import numpy as np

    from inference.results import ResultWriter, default_write_threads, segment_videos_and_write
    from inference.segmenter import InferenceOptions, VideoInput, VideoSegmenter
    from networks.weights import load_lsta
    from utils.image_io import read_image, video_frame_sources
    from utils.precision import set_float32_precision
    from utils.timing import SectionTimer, now
    rng = np.random.RandomState(0)
    model = load_lsta(args.checkpoint, Config())[0] if args.checkpoint else model_for(args.backbone, args.device)
    torch.backends.cudnn.benchmark = True  # as evaluations run (each new input size is tuned once, in the warm-up)
    with tempfile.TemporaryDirectory() as folder:
        videos = [args.frames] if args.frames else []
        base = cv2.resize(rng.randint(0, 255, (30, 54, 3)).astype(np.uint8), (854, 480))
        for v in range(0 if args.frames else args.pipeline_videos):  # smooth scenes panning right, JPEG like DAVIS
            videos.append(os.path.join(folder, "frames", str(v)))
            os.makedirs(videos[-1])
            for t in range(args.pipeline_frames // args.pipeline_videos):
                cv2.imwrite(os.path.join(videos[-1], f"{t:05d}.jpg"), np.roll(base, 4 * t + 97 * v, axis=1))
        files = list(video_frame_sources(videos[0]))  # the frames segment() will read, in its order
        count, first = sum(len(list(video_frame_sources(v))) for v in videos), read_image(files[0])
        weights = args.checkpoint or f"{args.backbone}, random weights"
        print(f"pipeline: {count} frames of {first.shape[0]}x{first.shape[1]} from {args.frames or 'a synthetic pan'} "
              f"({len(videos)} video(s), all in flight), {weights}, window {args.windows[0]}, {args.device}, "
              f"torch {torch.__version__}", flush=True)
        print("| precision | backend | channels_last | compiled | FPS with I/O | FPS model (synchronised) "
              "| FPS authors' way | masks = float32 |")
        print("|---|---|---|---|---|---|---|---|")
        reference = None
        rows = pipeline_options(args.device)
        for chosen in [rows[i] for i in args.rows] if args.rows else rows:  # the first is the agreement's reference
            precision = chosen["precision"]
            if args.device == "cuda":
                set_float32_precision(precision == "tf32")
            options = InferenceOptions(window=args.windows[0], onnx_cache=args.onnx_cache,
                                       videos_in_flight=len(videos), **chosen)
            segmenter = VideoSegmenter(model, options, args.device)
            segmenter.warm_up(first)
            # Pass 1, as eval.py runs: reading, the model and the writing of mask PNGs overlapped.
            start = now(args.device)
            def writer(video: VideoInput) -> ResultWriter:
                return ResultWriter(os.path.join(folder, "out", "masks", str(videos.index(video.frames))),
                                    threads=default_write_threads(torch.device(args.device)))

            found = {(video.frames, frame.index): frame.mask for video, frame in
                     segment_videos_and_write(segmenter, [VideoInput(v) for v in videos], writer) if frame is not None}
            masks = [found[key] for key in sorted(found)]
            with_io = len(masks) / (now(args.device) - start)
            # Pass 2: each model call timed (synchronised, which stops the overlap) and as the authors timed it.
            timer = SectionTimer(args.device, keep_calls=True)
            segmenter.measure = timer.measure
            for _ in segmenter.segment_videos([VideoInput(v) for v in videos]):
                pass
            model_s = timer.seconds.get("encoder", 0.0) + timer.seconds.get("head", 0.0)
            # The authors' count, as we read their test script: unsynchronised, and the encoding of
            # frames 0..M-2 never counted (frame 0 counts as ~0 s). Encoder calls take encode_batch
            # frames each, so the uncounted frames' share of each call is left out.
            skip, per_call = args.windows[0] - 1, segmenter.encode_batch
            encodes = [loose for name, _, loose in timer.calls if name == "encoder"]
            uncounted = sum(t * min(per_call, max(skip - i * per_call, 0)) / per_call for i, t in enumerate(encodes))
            authors_s = sum(loose for name, _, loose in timer.calls if name in ("encoder", "head")) - uncounted
            authors = f"{len(masks) / max(authors_s, 1e-9):.2f}" if len(videos) == 1 else "(one video only)"
            reference = reference or masks
            agreement = float(np.mean([np.mean(a == b) for a, b in zip(reference, masks)]))
            flags = " | ".join({True: "yes", False: "no"}.get(chosen.get(key, False), chosen.get(key))
                               for key in ("channels_last", "compile"))
            print(f"| {precision} | {chosen['backend']} | {flags} | {with_io:.2f} | {len(masks) / model_s:.2f} | "
                  f"{authors} | {100 * agreement:.3f} % |", flush=True)


def memory_run(frames: int) -> dict:
    """Peak RSS of streaming `frames` toy frames through VideoSegmenter (run in its own process)."""
    import numpy as np

    from inference.segmenter import InferenceOptions, VideoSegmenter
    cfg = Config()
    cfg.apply_preset("toy")
    torch.manual_seed(0)
    segmenter = VideoSegmenter(LSTA.from_config(cfg), InferenceOptions(window=11), device="cpu")
    rng = np.random.RandomState(0)
    base = rng.randint(0, 255, (120, 216, 3)).astype(np.uint8)
    stream = (np.roll(base, t, axis=1) for t in range(frames))
    count = sum(1 for _ in segmenter.segment(stream))
    return {"frames": count, "peak_mb": peak_memory_mb("cpu")}


def in_subprocess(flag: str, value: int | str, args: argparse.Namespace, threads: int | None = None) -> dict:
    """One cell of a table in its own process (tools.harness.run_cell)."""
    return run_cell("tools.bench_model", [flag, str(value), "--device", args.device, "--backbone", args.backbone,
                                          "--repeats", str(args.repeats), "--height", str(args.height), "--width",
                                          str(args.width), "--onnx_cache", args.onnx_cache,
                                          "--windows", *map(str, args.windows)], threads)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--backbone", default="resnet101")
    parser.add_argument("--height", type=int, default=481)
    parser.add_argument("--width", type=int, default=849)
    parser.add_argument("--windows", type=int, nargs="+", default=[11, 41])
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 2, 4])
    parser.add_argument("--scales", type=float, nargs="+", default=[0.75, 1.0, 1.25])
    parser.add_argument("--memory_frames", type=int, nargs="*", default=[100, 1000])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--ways", nargs="+", choices=list(CPU_WAYS), default=None,
                        help="backends: only these rows of the CPU table")
    parser.add_argument("--only", choices=["backends", "pipeline", "sta", "costs"], default=None,
                        help="one section of the report (costs: encoder, head, STA, multi-scale, memory)")
    parser.add_argument("--pipeline_frames", type=int, default=30, help="frames streamed by the pipeline section")
    parser.add_argument("--pipeline_videos", type=int, default=1,
                        help="pipeline: split the synthetic frames into this many videos, all in flight at once")
    parser.add_argument("--rows", type=int, nargs="*", default=None,
                        help="pipeline: only these rows of its table (0-based; the first given is the reference)")
    parser.add_argument("--frames", default=None, help="pipeline: a folder of frames instead of a synthetic pan")
    parser.add_argument("--checkpoint", default=None,
                        help="pipeline: the model this checkpoint records instead of random weights (e.g. to measure "
                             "the precisions' mask agreement with trained weights)")
    parser.add_argument("--onnx_cache", default=os.path.join(ROOT, "pretrained", "onnx"),
                        help="where the onnxruntime backend's export is kept (DIR_ONNX_CACHE)")
    parser.add_argument("--stream_run", default=None, help=argparse.SUPPRESS)               # internal
    parser.add_argument("--encoder_batch", type=int, default=None, help=argparse.SUPPRESS)  # internal
    parser.add_argument("--memory_run", type=int, default=None, help=argparse.SUPPRESS)     # internal
    args = parser.parse_args()
    if args.encoder_batch:
        print(json.dumps(encoder_cost(args, args.encoder_batch)))
        return
    if args.memory_run:
        print(json.dumps(memory_run(args.memory_run)))
        return
    if args.stream_run:
        print(json.dumps(stream_cost(args, args.stream_run)))
        return
    if args.only == "pipeline":
        pipeline_table(args)
        return
    if args.only == "sta":
        print_sta(args)
        return
    if args.device == "cpu" and args.only != "costs":
        backend_table(args)
    if args.only == "backends":
        return
    if args.only != "costs":
        pipeline_table(args)

    print(f"device {args.device} ({torch.get_num_threads()} threads), backbone {args.backbone}, input "
          f"{args.height}x{args.width}, float32, torch {torch.__version__}, random weights")
    encoders = [in_subprocess("--encoder_batch", b, args) for b in args.batches]
    for e in encoders:
        print(f"encoder, batch {e['batch']}: {e['ms_per_frame']:.1f} ms/frame "
              f"({e['ms_per_frame'] / encoders[0]['ms_per_frame']:.2f}x batch {encoders[0]['batch']}), "
              f"peak {e['peak_mb']:.0f} MiB")
    model = model_for(args.backbone, args.device)
    heads = head_costs(model, args.height, args.width, args.windows, args.device, args.repeats)
    for size, h in heads.items():
        print(f"head, window {size}: {h['cached_ms']:.1f} ms/frame cached, {h['authors_ms']:.1f} ms/frame "
              f"re-projecting like the authors (x{h['authors_ms'] / h['cached_ms']:.2f})")
    print_sta(args)
    default_batch = default_encode_batch(torch.device(args.device))
    encoder_ms = next((e["ms_per_frame"] for e in encoders if e["batch"] == default_batch), encoders[0]["ms_per_frame"])
    for size, h in heads.items():
        print(f"streaming, window {size}: {encoder_ms + h['cached_ms']:.0f} ms/frame (encoder batch "
              f"{default_batch} + head); with flip: {2 * (encoder_ms + h['cached_ms']):.0f} ms/frame")
    # Multi-scale: every scale's encoder and head, at that scale's 16k+1 size.
    total = 0.0
    for scale in args.scales:
        h, w = eval_size(args.height, args.width, 1040, scale)
        with torch.inference_mode():
            images = torch.randn(1, 3, h, w, device=args.device)
            enc = timed(lambda: model.cache_frames(model.encode(images)), args.device, args.repeats)
        head = head_costs(model, h, w, [args.windows[0]], args.device, args.repeats)[args.windows[0]]["cached_ms"]
        total += 1000 * enc + head
        print(f"scale {scale}: {h}x{w}, encoder {1000 * enc:.0f} + head {head:.0f} ms/frame")
    print(f"streaming, window {args.windows[0]}, scales {args.scales}: {total:.0f} ms/frame "
          f"({2 * total:.0f} with flip)")
    memories = [in_subprocess("--memory_run", n, args) for n in args.memory_frames]
    for m in memories:
        print(f"memory: {m['frames']} frames streamed, peak RSS {m['peak_mb']:.0f} MiB")
    print(f"peak memory of this process: {peak_memory_mb(args.device):.0f} MiB "
          f"({'GPU allocated' if args.device == 'cuda' else 'CPU RSS'})")


if __name__ == "__main__":
    main()
