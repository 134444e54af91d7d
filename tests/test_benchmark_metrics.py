"""Each benchmark's aggregation on hand-made cases with known answers."""
import csv
import os
import warnings

import numpy as np
import pytest
from PIL import Image

from evaluation.benchmarks import BENCHMARKS, score
from evaluation.datasets import EvalSequence
from evaluation.evaluators.saliency import PROBABILITIES
from evaluation.saliency import dataset_saliency, sequence_saliency
from utils.image_io import write_grey_png, write_palette_png

H, W = 20, 30


def _mask(columns: slice) -> np.ndarray:
    m = np.zeros((H, W), np.uint8)
    m[:, columns] = 1
    return m


def _sequence(root, name, gts: dict[int, np.ndarray], preds: dict[int, np.ndarray], frames: int, group: str = ""):
    """Frames 0..frames-1 (the images are never read when scoring), ground truth where given, results."""
    images = [os.path.join(root, "JPEGImages", name, f"{t:05d}.jpg") for t in range(frames)]
    annotations = {}
    for t, gt in gts.items():
        path = os.path.join(root, "Annotations", name, f"{t:05d}.png")
        write_palette_png(path, gt)
        annotations[f"{t:05d}"] = path
    for t, pred in preds.items():
        write_palette_png(os.path.join(root, "results", name, f"{t:05d}.png"), pred)
    return EvalSequence(name, images, annotations, group)


def _csv(path):
    with open(path) as f:
        return list(csv.DictReader(f))


def test_fbms_aggregation_skips_empty_ground_truth(tmp_path):
    half, quarter, empty = _mask(slice(0, 15)), _mask(slice(0, 7)), np.zeros((H, W), np.uint8)
    # Sequence a: frames 0 and 3 annotated, J = 1 and 7/15; frame 6 has empty ground truth: skipped.
    a = _sequence(tmp_path, "a", {0: half, 3: half, 6: empty}, {0: half, 3: quarter, 6: half}, 8)
    # Sequence b: one annotated frame, J = 0.
    b = _sequence(tmp_path, "b", {2: half}, {2: np.zeros((H, W), np.uint8)}, 4)
    result = score(BENCHMARKS["fbms"], [a, b], str(tmp_path / "results"), "val")
    assert result.headline["J-Mean"] == pytest.approx(((1 + 7 / 15) / 2 + 0) / 2)       # mean over sequences
    assert result.headline["J-Mean-frames"] == pytest.approx((1 + 7 / 15 + 0) / 3)      # pooled frames
    rows = _csv(tmp_path / "results" / "per-sequence_results.csv")
    assert [(r["Sequence"], int(r["Frames"])) for r in rows] == [("a", 2), ("b", 1)]


def test_segtrack_counts_every_annotated_frame(tmp_path):
    half, empty = _mask(slice(0, 15)), np.zeros((H, W), np.uint8)
    two_objects = half.copy()
    two_objects[:, 20:] = 2  # merged into one foreground
    a = _sequence(tmp_path, "a", {0: two_objects, 1: empty}, {0: (two_objects > 0).astype(np.uint8), 1: empty}, 2)
    result = score(BENCHMARKS["segtrackv2"], [a], str(tmp_path / "results"), "val")
    assert result.headline["J-Mean-frames"] == 1.0  # empty vs empty counts as 1 here


def test_youtube_objects_mean_over_classes_of_video_means(tmp_path):
    half = _mask(slice(0, 15))
    none = np.zeros((H, W), np.uint8)
    videos = [_sequence(tmp_path, "aeroplane/0001", {0: half}, {0: half}, 2, "aeroplane"),      # J 1
              _sequence(tmp_path, "aeroplane/0002", {0: half}, {0: none}, 2, "aeroplane"),      # J 0
              _sequence(tmp_path, "cat/0001", {0: half, 1: half}, {0: half, 1: half}, 2, "cat")]  # J 1
    result = score(BENCHMARKS["yto"], videos, str(tmp_path / "results"), "val")
    assert result.headline["J-Mean"] == pytest.approx((0.5 + 1.0) / 2)   # classes: aeroplane 0.5, cat 1
    assert result.headline["J-Mean-videos"] == pytest.approx(2 / 3)
    assert result.headline["J-aeroplane"] == pytest.approx(0.5) and result.headline["J-cat"] == 1.0


def test_davis_protocol_on_sparse_long_videos(tmp_path):
    half = _mask(slice(0, 15))
    # Long-Videos: annotated frames only (0, 4, 8), first and last included.
    a = _sequence(tmp_path, "a", {0: half, 4: half, 8: half}, {0: half, 4: half, 8: _mask(slice(0, 5))}, 9)
    result = score(BENCHMARKS["longvideos"], [a], str(tmp_path / "results"), "val")
    assert result.headline["J-Mean"] == pytest.approx((1 + 1 + 5 / 15) / 3)
    assert os.path.isfile(tmp_path / "results" / "global_results.csv")


def _probability(rng, gt):
    p = np.clip(gt * 170 + rng.randint(0, 90, gt.shape), 0, 255)
    return p.astype(np.uint8)


def test_saliency_agrees_with_pysodmetrics_and_averages_curves_per_sequence(tmp_path):
    warnings.simplefilter("ignore")
    from py_sod_metrics import MAE, Fmeasure, Smeasure
    rng = np.random.RandomState(0)
    gts = [(_mask(slice(5 + t, 15 + t)) * 255).astype(np.uint8) for t in range(6)]
    probs = [_probability(rng, g // 255) for g in gts]
    # One sequence: our per-sequence measures are pysodmetrics' own dataset figures on its frames.
    ours = sequence_saliency(list(zip(probs, gts)))
    s, f, mae = Smeasure(alpha=0.5), Fmeasure(beta=0.3), MAE()
    for p, g in zip(probs, gts):
        s.step(p, g), f.step(p, g), mae.step(p, g)
    reference = f.get_results()["fm"]
    assert ours["S"] == pytest.approx(s.get_results()["sm"])
    assert ours["MAE"] == pytest.approx(mae.get_results()["mae"])
    assert ours["adpF"] == pytest.approx(reference["adp"])
    assert np.allclose(ours["F_curve"], reference["curve"])
    # Two sequences of different lengths: the dataset figure is the mean over sequences, and max F
    # the max of the mean of their curves (not the mean of their maxima, nor frames pooled).
    second = sequence_saliency(list(zip(probs[:2], gts[:2])))
    figures = dataset_saliency([ours, second])
    assert figures["S"] == pytest.approx((ours["S"] + second["S"]) / 2)
    assert figures["maxF"] == pytest.approx(((ours["F_curve"] + second["F_curve"]) / 2).max())
    pooled = sequence_saliency(list(zip(probs + probs[:2], gts + gts[:2])))
    assert figures["S"] != pytest.approx(pooled["S"])


def test_saliency_benchmark_reads_probability_maps_of_inner_frames(tmp_path):
    rng = np.random.RandomState(1)
    gts = {t: _mask(slice(3 + t, 12 + t)) for t in range(5)}
    seq = _sequence(tmp_path, "v", {t: (g * 255) for t, g in gts.items()}, {}, 5)
    for t, g in gts.items():
        write_grey_png(str(tmp_path / "results" / PROBABILITIES / "v" / f"{t:05d}.png"), _probability(rng, g))
    result = score(BENCHMARKS["visal"], [seq], str(tmp_path / "results"), "val")
    probs = [np.array(Image.open(tmp_path / "results" / PROBABILITIES / "v" / f"{t:05d}.png")) for t in (1, 2, 3)]
    expected = sequence_saliency([(p, (gts[t] * 255).astype(np.uint8)) for p, t in zip(probs, (1, 2, 3))])
    assert result.headline["S"] == pytest.approx(expected["S"])           # frames 1..n-2 only
    assert result.headline["maxF"] == pytest.approx(expected["F_curve"].max())


def test_saliency_drops_the_first_and_last_annotated_frames_of_a_sparse_video(tmp_path):
    # ViSal-like: 12 video frames, ground truth on frames 1, 4, 7 and 10 only (not on the video's
    # first and last frames).
    # The toolbox's main.m scores ground-truth files 2..fileNUM-1: frames 4 and 7.
    rng = np.random.RandomState(2)
    annotated = (1, 4, 7, 10)
    gts = {t: _mask(slice(2 + t, 12 + t)) for t in annotated}
    seq = _sequence(tmp_path, "v", {t: (g * 255) for t, g in gts.items()}, {}, 12)
    from evaluation.evaluators.saliency import inner_annotated
    assert inner_annotated(seq) == ["00004", "00007"]
    for t in range(12):
        gt = gts.get(t, _mask(slice(0, 5)))
        write_grey_png(str(tmp_path / "results" / PROBABILITIES / "v" / f"{t:05d}.png"), _probability(rng, gt))
    result = score(BENCHMARKS["visal"], [seq], str(tmp_path / "results"), "val")
    probs = {t: np.array(Image.open(tmp_path / "results" / PROBABILITIES / "v" / f"{t:05d}.png")) for t in annotated}
    expected = sequence_saliency([(probs[t], (gts[t] * 255).astype(np.uint8)) for t in (4, 7)])
    assert result.headline["S"] == pytest.approx(expected["S"])
    assert result.headline["MAE"] == pytest.approx(expected["MAE"])
    # Dropping video frames 0 and 11 instead would have scored 1, 4, 7, 10: a different figure.
    wrong = sequence_saliency([(probs[t], (gts[t] * 255).astype(np.uint8)) for t in annotated])
    assert wrong["S"] != pytest.approx(expected["S"])


H, W = 24, 32  # a ground-truth frame's size


def _object(left: int) -> np.ndarray:
    mask = np.zeros((H, W), np.uint8)
    mask[4:20, left:left + 12] = 1
    return mask


def _write_gt(path, mask, encoding):
    path.parent.mkdir(parents=True, exist_ok=True)
    if encoding == "palette":
        write_palette_png(str(path), mask)
    elif encoding == "grey 0/255":
        write_grey_png(str(path), mask * 255)
    elif encoding == "grey 0/1":
        write_grey_png(str(path), mask)
    elif encoding == "alpha only":
        rgba = np.zeros((H, W, 4), np.uint8)
        rgba[..., 3] = mask * 255
        Image.fromarray(rgba, "RGBA").save(path)


@pytest.mark.parametrize("encoding", ["palette", "grey 0/255", "grey 0/1", "alpha only"])
def test_ground_truth_encodings_score_alike(tmp_path, encoding):
    from evaluation.datasets import EvalSequence
    frames = 5
    gts = {t: _object(2 + 3 * t) for t in range(frames)}
    annotations = {}
    for t, gt in gts.items():
        path = tmp_path / "gt" / f"{t:05d}.png"
        _write_gt(path, gt, encoding)
        annotations[f"{t:05d}"] = str(path)
        write_palette_png(str(tmp_path / "res" / "v" / f"{t:05d}.png"), gt)         # perfect masks
        write_grey_png(str(tmp_path / "res" / PROBABILITIES / "v" / f"{t:05d}.png"), gt * 255)  # perfect maps
    seq = EvalSequence("v", [str(tmp_path / f"{t:05d}.jpg") for t in range(frames)], annotations)
    # Before: 0/1 saliency ground truth scored maxF 0.0 for perfect maps; alpha-only masks scored as empty.
    jf = score(BENCHMARKS["davis2016"], [seq], str(tmp_path / "res"), "val")
    assert jf.headline["J-Mean"] == 1.0 and jf.headline["F-Mean"] == 1.0
    saliency = score(BENCHMARKS["visal"], [seq], str(tmp_path / "res"), "val")
    assert saliency.headline["maxF"] == pytest.approx(1.0) and saliency.headline["MAE"] == 0.0
