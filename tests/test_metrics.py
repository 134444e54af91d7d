import csv
import os
import shutil

import cv2
import numpy as np
import pytest
from PIL import Image

from evaluation.benchmarks import BENCHMARKS, score
from evaluation.datasets import davis_sequences
from evaluation.metrics import (
    boundary_f,
    boundary_map,
    disk,
    region_iou,
    score_pairs,
    statistics,
)
from tests.conftest import shared_path
from utils.image_io import read_binary_mask, write_palette_png


def official_seg2bmap(seg):
    """A literal transcription of the DAVIS toolkit's seg2bmap, as an independent reference."""
    seg = seg.astype(bool)
    e, s, se = np.zeros_like(seg), np.zeros_like(seg), np.zeros_like(seg)
    e[:, :-1] = seg[:, 1:]
    s[:-1, :] = seg[1:, :]
    se[:-1, :-1] = seg[1:, 1:]
    b = seg ^ e | seg ^ s | seg ^ se
    b[-1, :] = seg[-1, :] ^ e[-1, :]
    b[:, -1] = seg[:, -1] ^ s[:, -1]
    b[-1, -1] = 0
    return b


def test_iou_cases():
    empty = np.zeros((5, 7), bool)
    one = empty.copy()
    one[2, 3] = True
    assert region_iou(empty, empty) == 1.0
    assert region_iou(empty, one) == 0.0 and region_iou(one, empty) == 0.0
    assert region_iou(one, one) == 1.0
    two = one.copy()
    two[2, 4] = True
    assert region_iou(one, two) == 0.5


def test_boundary_map_matches_official_including_borders():
    rng = np.random.RandomState(0)
    for shape in [(1, 1), (2, 3), (5, 7), (17, 31), (40, 9)]:
        for _ in range(20):
            mask = rng.rand(*shape) < rng.rand()
            assert np.array_equal(boundary_map(mask), official_seg2bmap(mask)), shape
    # An object touching the right and bottom border: zero padding would mark the border as edge.
    mask = np.zeros((6, 6), bool)
    mask[3:, 3:] = True
    b = boundary_map(mask)
    assert not b[-1, -1] and not b[5, 4] and b[2, 4]


def test_disk_is_skimage_disk():
    assert disk(1).tolist() == [[0, 1, 0], [1, 1, 1], [0, 1, 0]]
    assert disk(2).sum() == 13


def test_boundary_f_cases():
    empty = np.zeros((9, 11), bool)
    obj = empty.copy()
    obj[3:6, 4:8] = True
    assert boundary_f(empty, empty) == 1.0          # no boundary anywhere: P = R = 1
    assert boundary_f(obj, empty) == 0.0            # GT boundary, none predicted: P = 1, R = 0
    assert boundary_f(empty, obj) == 0.0            # predicted, no GT boundary: P = 0, R = 1
    assert boundary_f(obj, obj) == 1.0
    # One-pixel objects one pixel apart: tolerance ceil(0.008·√(81+121)) = 1 pixel (a cross).
    a, b = empty.copy(), empty.copy()
    a[4, 4] = True
    b[4, 5] = True
    ba, bb = official_seg2bmap(a), official_seg2bmap(b)
    da = cv2.dilate(ba.astype(np.uint8), disk(1)).astype(bool)
    db = cv2.dilate(bb.astype(np.uint8), disk(1)).astype(bool)
    precision, recall = (bb & da).sum() / bb.sum(), (ba & db).sum() / ba.sum()
    assert precision == recall == 1.0  # each 2x2 boundary block lies within one pixel of the other
    assert boundary_f(a, b) == pytest.approx(1.0)
    c = empty.copy()
    c[4, 8] = True  # four pixels away: no boundary pixel matches
    assert boundary_f(a, c) == 0.0


def test_boundary_tolerance_on_odd_sizes():
    # 481x849: r = ceil(0.008 · 974.8) = 8. A 7-pixel shift of a large square is matched fully,
    # a 20-pixel shift only where the edges overlap.
    gt = np.zeros((481, 849), bool)
    gt[100:300, 200:500] = True
    assert boundary_f(gt, np.roll(gt, 7, axis=1)) == pytest.approx(1.0)
    far = boundary_f(gt, np.roll(gt, 20, axis=1))
    assert 0.3 < far < 0.8


def test_statistics_decay_binning():
    mean, recall, decay = statistics(np.array([1, 1, 1, 0.5, 0.5, 0, 0, 0]))
    # ids = round(linspace(1, 8, 5)) - 1 = [0, 2, 4, 5, 7]: bins v[0:3], v[2:5], v[4:6], v[5:8].
    assert mean == pytest.approx(0.5) and recall == pytest.approx(3 / 8) and decay == pytest.approx(1.0)
    assert statistics(np.array([0.7])) == (pytest.approx(0.7), 1.0, 0.0)  # a 3-frame sequence
    values = np.array([1.0] * 225 + [0.0] * 75)  # 300 frames: ids past 255 must not wrap
    assert statistics(values)[2] == pytest.approx(1 - 1 / 76)
    with pytest.raises(ValueError):
        statistics(np.array([]))


def _write_grey(path, mask, scale):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    Image.fromarray((mask * scale).astype(np.uint8), mode="L").save(path)


def test_scorer_on_real_sequences_with_damaged_masks(tmp_path):
    root = shared_path("data", "davis16_sample")
    sequences = davis_sequences(root, "2016")
    perfect, damaged = tmp_path / "perfect", tmp_path / "damaged"
    for seq in sequences:
        for i, gt_path in enumerate(seq.masks):
            gt = read_binary_mask(gt_path)
            name = os.path.basename(gt_path)
            write_palette_png(str(perfect / seq.name / name), gt)
            # Damage: erode by 5 pixels, and blank the second half of the video.
            bad = cv2.erode(gt.astype(np.uint8), np.ones((11, 11), np.uint8))
            if i > len(seq.masks) // 2:
                bad[:] = 0
            (_write_grey if i % 2 else lambda p, m, s: write_palette_png(p, m))(
                str(damaged / seq.name / name), bad, 255)
    figures, rows = score_davis(str(perfect), sequences)
    assert figures["J-Mean"] == 1.0 and figures["F-Mean"] == 1.0 and figures["J-Decay"] == 0.0
    figures, rows = score_davis(str(damaged), sequences)
    for row in rows:
        assert 0.3 < row["J-Mean"] < 0.7 and row["J-Decay"] > 0.5 and row["F-Decay"] > 0.5
    with open(damaged / "global_results-val.csv") as f:
        header, values = list(csv.reader(f))
    assert header == ["J&F-Mean", "J-Mean", "J-Recall", "J-Decay", "F-Mean", "F-Recall", "F-Decay"]
    assert float(values[1]) == figures["J-Mean"]
    with open(damaged / "per-sequence_results-val.csv") as f:
        assert next(csv.reader(f)) == ["Sequence", "J-Mean", "J-Recall", "J-Decay", "F-Mean", "F-Recall", "F-Decay"]

    seq = sequences[0]
    missing = os.path.join(damaged, seq.name, os.path.basename(seq.masks[3]))
    os.remove(missing)
    with pytest.raises(FileNotFoundError, match=f"{seq.name}.*00003.png"):
        score_davis(str(damaged), sequences)
    Image.new("P", (100, 50)).save(missing)
    with pytest.raises(ValueError, match="00003.png is 100x50 but the ground truth .* is 854x480"):
        score_davis(str(damaged), sequences)
    shutil.rmtree(damaged / seq.name)
    with pytest.raises(FileNotFoundError, match=f"result mask missing: .*{seq.name}"):
        score_davis(str(damaged), sequences)


def score_davis(results_dir: str, sequences) -> tuple[dict, list[dict]]:
    """The DAVIS-2016 benchmark's scoring (as eval.py runs it): global figures and per-sequence rows."""
    score(BENCHMARKS["davis2016"], sequences, results_dir, "val")
    with open(os.path.join(results_dir, "global_results-val.csv")) as f:
        figures = {k: float(v) for k, v in next(csv.DictReader(f)).items()}
    with open(os.path.join(results_dir, "per-sequence_results-val.csv")) as f:
        rows = [{k: v if k == "Sequence" else float(v) for k, v in row.items()} for row in csv.DictReader(f)]
    return figures, rows


def test_mask_encodings_score_alike(tmp_path):
    rng = np.random.RandomState(0)
    gts, preds = [], []
    for t in range(5):
        gts.append(rng.rand(30, 41) > 0.6)
        preds.append(rng.rand(30, 41) > 0.6)
    for t, (g, p) in enumerate(zip(gts, preds)):
        _write_grey(str(tmp_path / "gt" / f"{t:05d}.png"), g, 255)
        _write_grey(str(tmp_path / "grey01" / f"{t:05d}.png"), p, 1)
        _write_grey(str(tmp_path / "grey255" / f"{t:05d}.png"), p, 255)
        write_palette_png(str(tmp_path / "palette" / f"{t:05d}.png"), p * 3)  # any nonzero index
    gt_paths = [str(tmp_path / "gt" / f"{t:05d}.png") for t in range(5)]
    scores = [score_pairs("s", [(g, str(tmp_path / d / os.path.basename(g))) for g in gt_paths[1:-1]])
              for d in ("grey01", "grey255", "palette")]
    expected_j = [region_iou(g, p) for g, p in zip(gts[1:-1], preds[1:-1])]
    for s in scores:
        assert s.j.tolist() == expected_j
        assert s.f.tolist() == scores[0].f.tolist()
