"""Small synthetic videos in the layouts of the training sets and of every benchmark (the tests' and the demo's data).

    python -m tools.make_toy_data --out data/toy [--seed N]      # the command line (tools/make_toy_data.py)

Objects are ellipses with a sharp checker texture moving over a background of soft colour blobs
that scrolls on its own. Both draw their colours from the same per-video palette, so one frame's
colours do not give the object away: its texture and its motion relative to the background do.
Output (byte-identical for the same arguments):
    <out>/DAVIS/JPEGImages/480p/<seq>/00000.jpg, Annotations/480p/<seq>/00000.png (palette, ids 1..K),
    <out>/DAVIS/ImageSets/2017/{train,val}.txt, ImageSets/2016/val.txt
    <out>/YTB/train/JPEGImages/<vid>/*.jpg, Annotations/<vid>/*.png (every 5th frame), meta.json
    <out>/{FBMS,YTO,YTO_flat,LongVideos,SegTrackv2,ViSal,DAVSOD,YTB/valid}/: the benchmarks' folder
        layouts (JPEGImages/<seq>/, sparse Annotations/<seq>/; YTO as <class>/<video>/ and flat)
    <out>/videos/: a folder of frames and an .avi (eval.py --dataset folder)
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass
from typing import Callable

import cv2
import numpy as np

from utils.image_io import write_grey_png, write_image, write_palette_png


@dataclass
class ToySpec:
    """Sizes and counts of the toy datasets."""
    height: int = 120
    width: int = 216
    davis_train: int = 4
    davis_val: int = 2
    davis_frames: int = 12
    ytb_videos: int = 4
    ytb_frames: int = 21
    ytb_annotation_step: int = 5
    bench_frames: int = 8


@dataclass
class _Object:
    centre: np.ndarray      # (y, x)
    velocity: np.ndarray    # (dy, dx) per frame
    axes: tuple[float, float]
    angle: float
    period: int
    colours: np.ndarray     # (2, 3) uint8 BGR


def _palette(rng: np.random.RandomState) -> np.ndarray:
    return rng.randint(30, 226, size=(3, 3)).astype(np.float32)


def _background(rng: np.random.RandomState, h: int, w: int, palette: np.ndarray) -> np.ndarray:
    # Soft blobs: each pixel takes the palette colour whose smooth random field is largest there.
    cell = 12
    fields = rng.rand(len(palette), h // cell + 2, w // cell + 2).astype(np.float32)
    fields = np.stack([cv2.resize(f, (w, h), interpolation=cv2.INTER_CUBIC) for f in fields])
    image = palette[np.argmax(fields, axis=0)]
    return cv2.GaussianBlur(image, (0, 0), 1.5)


def _objects(rng: np.random.RandomState, count: int, size: tuple[int, int], palette: np.ndarray,
             leaves_view: bool, frames: int) -> list[_Object]:
    h, w = size
    objects = []
    for index in range(count):
        centre = np.array([rng.uniform(0.3, 0.7) * h, rng.uniform(0.2 + 0.3 * index / max(count, 1), 0.8) * w])
        speed = rng.uniform(1.0, 2.5)
        angle = rng.uniform(0, 2 * np.pi)
        velocity = speed * np.array([np.sin(angle), np.cos(angle)])
        if leaves_view and index == 0:
            # Fast horizontal exit: gone from the view in the second half of the video.
            velocity = np.array([0.0, 1.4 * w / frames])
        pair = rng.choice(len(palette), size=2, replace=False)
        objects.append(_Object(centre, velocity, (rng.uniform(0.12, 0.2) * h, rng.uniform(0.1, 0.18) * w),
                               rng.uniform(0, np.pi), int(rng.randint(6, 10)), palette[pair]))
    return objects


def _render_video(rng: np.random.RandomState, spec: ToySpec, frames: int, num_objects: int,
                  leaves_view: bool) -> tuple[list[np.ndarray], list[np.ndarray]]:
    h, w = spec.height, spec.width
    palette = _palette(rng)
    margin = 3 * frames + 8
    background = _background(rng, h + 2 * margin, w + 2 * margin, palette)
    bg_velocity = rng.uniform(-1.5, 1.5, size=2)
    objects = _objects(rng, num_objects, (h, w), palette, leaves_view, frames)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    images, masks = [], []
    for t in range(frames):
        oy, ox = (margin + bg_velocity * t).astype(int)
        image = background[oy:oy + h, ox:ox + w].copy()
        mask = np.zeros((h, w), np.uint8)
        for obj_id, obj in enumerate(objects, start=1):
            cy, cx = obj.centre + obj.velocity * t
            dy, dx = yy - cy, xx - cx
            c, s = np.cos(obj.angle), np.sin(obj.angle)
            u, v = c * dx + s * dy, -s * dx + c * dy
            inside = (u / obj.axes[1]) ** 2 + (v / obj.axes[0]) ** 2 <= 1.0
            checker = ((np.floor(u / obj.period) + np.floor(v / obj.period)) % 2).astype(int)
            image[inside] = obj.colours[checker[inside]]
            mask[inside] = obj_id
        noise = rng.normal(0, 4, size=image.shape).astype(np.float32)
        images.append(np.clip(image + noise, 0, 255).astype(np.uint8))
        masks.append(mask)
    return images, masks


def write_davis(out: str, spec: ToySpec, seed: int) -> None:
    """The DAVIS-2017 layout: 480p frames, palette masks, ImageSets for 2017 train/val and 2016 val."""
    root = os.path.join(out, "DAVIS")
    names = {"train": [f"toy-train-{i:02d}" for i in range(spec.davis_train)],
             "val": [f"toy-val-{i:02d}" for i in range(spec.davis_val)]}
    for split, seqs in names.items():
        for index, seq in enumerate(seqs):
            rng = np.random.RandomState([seed, 0 if split == "train" else 1, index])
            # Val videos hold one object (DAVIS-2016); train videos have 1-3, one of which may leave.
            count = 1 if split == "val" else 1 + index % 3
            images, masks = _render_video(rng, spec, spec.davis_frames, count, split == "train" and index % 4 == 3)
            for t, (image, mask) in enumerate(zip(images, masks)):
                write_image(os.path.join(root, "JPEGImages", "480p", seq, f"{t:05d}.jpg"), image)
                write_palette_png(os.path.join(root, "Annotations", "480p", seq, f"{t:05d}.png"), mask)
    _write_lines(os.path.join(root, "ImageSets", "2017", "train.txt"), names["train"])
    _write_lines(os.path.join(root, "ImageSets", "2017", "val.txt"), names["val"])
    _write_lines(os.path.join(root, "ImageSets", "2016", "val.txt"), names["val"])


def write_youtubevos(out: str, spec: ToySpec, seed: int) -> None:
    """The YouTube-VOS-2019 train layout: all frames, masks every 5th frame, official meta.json."""
    root = os.path.join(out, "YTB", "train")
    meta: dict = {"videos": {}}
    for index in range(spec.ytb_videos):
        vid = f"toyytb{index:04d}"
        rng = np.random.RandomState([seed, 2, index])
        count = 1 + index % 2
        images, masks = _render_video(rng, spec, spec.ytb_frames, count, index % 4 == 3)
        objects: dict = {}
        for t, (image, mask) in enumerate(zip(images, masks)):
            name = f"{t:05d}"
            write_image(os.path.join(root, "JPEGImages", vid, name + ".jpg"), image)
            if t % spec.ytb_annotation_step:
                continue
            write_palette_png(os.path.join(root, "Annotations", vid, name + ".png"), mask)
            for obj_id in np.unique(mask[mask > 0]):
                objects.setdefault(str(int(obj_id)), {"category": "toy", "frames": []})["frames"].append(name)
        meta["videos"][vid] = {"objects": objects}
    with open(os.path.join(root, "meta.json"), "w") as f:
        json.dump(meta, f, indent=1, sort_keys=True)


@dataclass(frozen=True)
class VideoSet:
    """A benchmark's toy videos: random stream `tag`, length, which frames are annotated, how."""
    tag: int
    frames: int
    annotate: Callable[[int], bool]
    objects: int = 1
    grey: bool = False          # 0/255 grey ground truth (saliency sets) instead of palette PNGs
    leaves_view: bool = False   # the first video's object leaves the view


def _write_video_set(root: str, names: list[str], spec: ToySpec, seed: int, videos: VideoSet) -> None:
    """Videos in the folder layout: JPEGImages/<name>/<t>.jpg, Annotations/<name>/<t>.png where `annotate(t)`."""
    for index, name in enumerate(names):
        rng = np.random.RandomState([seed, videos.tag, index])
        images, masks = _render_video(rng, spec, videos.frames, videos.objects, videos.leaves_view and index == 0)
        for t, (image, mask) in enumerate(zip(images, masks)):
            write_image(os.path.join(root, "JPEGImages", name, f"{t:05d}.jpg"), image)
            if videos.annotate(t):
                path = os.path.join(root, "Annotations", name, f"{t:05d}.png")
                if videos.grey:  # saliency sets ship 0/255 grey ground truth
                    write_grey_png(path, (mask > 0).astype(np.uint8) * 255)
                else:
                    write_palette_png(path, mask)


def write_benchmarks(out: str, spec: ToySpec, seed: int) -> None:
    """Toy copies of the evaluation benchmarks' layouts (docs/evaluation.md), a few short videos each."""
    n = spec.bench_frames
    # FBMS: sparse annotations, an ImageSets/test.txt; the first video's object leaves the view, so
    # its last annotated frames have empty ground truth.
    fbms = ["toyfbms01", "toyfbms02"]
    _write_video_set(os.path.join(out, "FBMS"), fbms, spec, seed, VideoSet(10, 2 * n, lambda t: t % 3 == 0,
                                                                            leaves_view=True))
    _write_lines(os.path.join(out, "FBMS", "ImageSets", "test.txt"), fbms)
    # YouTube-Objects as distributed (JPEGImages/<class>/<video>/) and flat (<class><number>).
    yto = ["aeroplane/0001", "aeroplane/0002", "cat/0001"]
    yto_set = VideoSet(11, n, lambda t: t % 2 == 0, leaves_view=True)
    _write_video_set(os.path.join(out, "YTO"), yto, spec, seed, yto_set)
    _write_video_set(os.path.join(out, "YTO_flat"), [v.replace("/", "") for v in yto], spec, seed, yto_set)
    _write_video_set(os.path.join(out, "LongVideos"), ["toylong01", "toylong02"], spec, seed,
                     VideoSet(12, 2 * n, lambda t: t % 4 == 0))
    _write_video_set(os.path.join(out, "SegTrackv2"), ["toyst01", "toyst02"], spec, seed,
                     VideoSet(13, n, lambda t: True, objects=2))
    for tag, name in ((14, "ViSal"), (15, "DAVSOD")):
        _write_video_set(os.path.join(out, name), [f"toy{name.lower()}01", f"toy{name.lower()}02"], spec, seed,
                         VideoSet(tag, n, lambda t: True, grey=True))
    # YouTube-VOS valid: every frame, the first frame's mask only (unused: unsupervised).
    _write_video_set(os.path.join(out, "YTB", "valid"), ["toyytbv01", "toyytbv02"], spec, seed,
                     VideoSet(16, n, lambda t: t == 0))
    # Your own videos: a folder of frames and a video file.
    images, _ = _render_video(np.random.RandomState([seed, 17, 0]), spec, n, 1, False)
    os.makedirs(os.path.join(out, "videos"), exist_ok=True)
    writer = cv2.VideoWriter(os.path.join(out, "videos", "clip.avi"), cv2.VideoWriter_fourcc(*"MJPG"), 10,
                             (spec.width, spec.height))
    for t, image in enumerate(images):
        write_image(os.path.join(out, "videos", "frames", f"{t:05d}.jpg"), image)
        writer.write(image)
    writer.release()


def _write_lines(path: str, lines: list[str]) -> None:
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as f:
        f.write("\n".join(lines) + "\n")


def make_toy_data(out: str, seed: int = 0, spec: ToySpec | None = None) -> None:
    """Write both toy datasets under `out`."""
    spec = spec or ToySpec()
    write_davis(out, spec, seed)
    write_youtubevos(out, spec, seed)
    write_benchmarks(out, spec, seed)


def ensure_toy_data(out: str = "data/toy") -> str:
    """`out`, after writing the toy data there (seed 0) unless a folder is already there; for the tools."""
    if not os.path.isdir(out):
        make_toy_data(out, seed=0)
    return out
