"""Every benchmark end to end on the toy layouts, the inference engine's API, test-time augmentation."""
import csv
import os
import subprocess

import numpy as np
import pytest
import torch
from PIL import Image

from config import Config
from evaluation.datasets import folder_sequences, video_folder_sequences
from inference.segmenter import InferenceOptions, VideoSegmenter
from networks.lsta import LSTA
from tests.conftest import ROOT, davis_j_mean
from tests.helpers.builders import TOY_EVAL
from tests.helpers.runs import EVAL_TOY, run_script
from utils.image_io import read_image


@pytest.fixture(scope="module")
def toy_model():
    cfg = Config()
    cfg.apply_preset("toy")
    cfg.set("MODEL_MAX_MEM", 4)
    torch.manual_seed(0)
    return LSTA.from_config(cfg).eval(), cfg





def read_csv(path):
    with open(path) as f:
        return list(csv.DictReader(f))


@pytest.fixture(scope="module")
def all_results(toy_root, toy_weights, tmp_path_factory):
    out = tmp_path_factory.mktemp("all")
    done = subprocess.run(["bash", "eval.sh", "all", toy_weights, "--preset", "toy", "--out", str(out),
                           "--opts", "DIR_DATA", toy_root, *TOY_EVAL], cwd=ROOT, capture_output=True, text=True,
                          timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    return out, done.stdout


def _saliency_mae(results, root) -> float:
    """MAE over each sequence's annotated frames but the first and last, then over sequences."""
    per_sequence = []
    for seq in sorted(os.listdir(os.path.join(root, "Annotations"))):
        names = sorted(os.listdir(os.path.join(root, "Annotations", seq)))[1:-1]
        errors = []
        for name in names:
            gt = (np.array(Image.open(os.path.join(root, "Annotations", seq, name)).convert("L")) > 128).astype(float)
            prob = np.array(Image.open(os.path.join(results, "probabilities", seq, name)).convert("L")).astype(float)
            span = prob.max() - prob.min()
            prob = (prob - prob.min()) / span if span else prob / 255  # min-max normalised, as the toolbox
            errors.append(np.abs(prob - gt).mean())
        per_sequence.append(np.mean(errors))
    return float(np.mean(per_sequence))


def test_every_benchmark_runs_end_to_end(toy_root, all_results):
    out, stdout = all_results
    summary = read_csv(out / "summary-step_7" / "summary.csv")
    assert {r["benchmark"] for r in summary} == {"davis2016", "davis2017", "fbms", "yto", "longvideos", "segtrackv2",
                                                 "visal", "davsod", "youtubevos"}
    figures = {(r["benchmark"], r["figure"]): float(r["value"]) for r in summary}
    # Exact values, recomputed here from the files on disk (not through evaluation/).
    davis = os.path.join(toy_root, "DAVIS")
    assert figures[("davis2016", "J-Mean")] == pytest.approx(
        davis_j_mean(out / "davis2016-val" / "step_7", davis, ["toy-val-00", "toy-val-01"]), rel=1e-12)
    for bench, folder in (("visal", "ViSal"), ("davsod", "DAVSOD")):
        assert figures[(bench, "MAE")] == pytest.approx(_saliency_mae(out / bench / "step_7", os.path.join(toy_root, folder)),
                                                        rel=1e-9)
    assert figures[("youtubevos", "videos")] == 2
    # Frame 0 is predicted for every video; sparse benchmarks are predicted on every frame too.
    fbms = os.path.join(toy_root, "FBMS", "JPEGImages", "toyfbms01")
    assert sorted(os.listdir(out / "fbms" / "step_7" / "toyfbms01")) == [f[:-4] + ".png" for f in sorted(os.listdir(fbms))]
    ytb = out / "youtubevos" / "step_7" / "Annotations" / "toyytbv01"
    assert len(os.listdir(ytb)) == 8 and Image.open(ytb / "00000.png").mode == "P"
    # Saliency needs the probability maps, 8-bit, at the frames' size.
    probability = Image.open(out / "visal" / "step_7" / "probabilities" / "toyvisal01" / "00003.png")
    assert probability.mode == "L" and probability.size == (216, 120)
    for name in ("global_results-val.csv", "per-sequence_results-val.csv"):
        assert os.path.isfile(out / "davis2016-val" / "step_7" / name)
    assert {r["Class"] for r in read_csv(out / "yto" / "step_7" / "per-class_results.csv")} == {"aeroplane", "cat"}


def test_youtube_objects_flat_layout_scores_like_the_nested_one(toy_root, toy_weights, all_results, tmp_path):
    out, _ = all_results
    flat = run_script(*EVAL_TOY, "--dataset", "yto", "--root", os.path.join(toy_root, "YTO_flat"), "--ckpt_path",
                      toy_weights, "--out", str(tmp_path / "flat"), "--opts", "DIR_DATA", toy_root, *TOY_EVAL)
    assert flat.returncode == 0, flat.stderr[-3000:]
    nested = read_csv(out / "yto" / "step_7" / "per-class_results.csv")
    assert read_csv(tmp_path / "flat" / "per-class_results.csv") == nested


def test_fbms_skips_empty_ground_truth_and_reads_its_split(toy_root):
    sequences = folder_sequences(os.path.join(toy_root, "FBMS"), "test")
    assert [s.name for s in sequences] == ["toyfbms01", "toyfbms02"]
    assert sequences[0].frame_names == [f"{t:05d}" for t in range(16)]
    assert sorted(sequences[0].annotations) == [f"{t:05d}" for t in range(0, 16, 3)]
    from evaluation.benchmarks import BENCHMARKS, scoring_context
    from evaluation.evaluators.region import scored_pairs
    pairs = scored_pairs(scoring_context(BENCHMARKS["fbms"], "/results", "val"), sequences[0])
    assert [os.path.basename(p[0]) for p in pairs] == ["00000.png", "00003.png", "00006.png", "00009.png"]


def test_folder_of_videos(toy_root, toy_weights, tmp_path):
    sequences = video_folder_sequences(os.path.join(toy_root, "videos"))
    assert [(s.name, bool(s.video)) for s in sequences] == [("clip", True), ("frames", False)]
    out = run_script(*EVAL_TOY, "--dataset", "folder", "--root", os.path.join(toy_root, "videos"), "--ckpt_path",
                     toy_weights, "--out", str(tmp_path / "res"), "--overlays", "--opts", *TOY_EVAL)
    assert out.returncode == 0, out.stderr[-3000:]
    for name in ("clip", "frames"):
        assert len(os.listdir(tmp_path / "res" / name)) == 8
        assert len(os.listdir(tmp_path / "res" / "overlays" / name)) == 8


def _frames(toy_root, count=9):
    seq = os.path.join(toy_root, "DAVIS/JPEGImages/480p/toy-val-01")
    return [read_image(os.path.join(seq, f)) for f in sorted(os.listdir(seq))][:count]


def test_segmenter_in_memory_equals_eval_video(toy_root, toy_model, toy_weights, tmp_path):
    frames = _frames(toy_root)
    folder = tmp_path / "frames"
    folder.mkdir()
    for t, frame in enumerate(frames):
        Image.fromarray(frame[..., ::-1]).save(folder / f"{t:05d}.png")  # lossless: the same pixels back
    out = run_script(*EVAL_TOY, "--video", str(folder), "--ckpt_path", toy_weights, "--out", str(tmp_path / "res"),
                   "--opts", *TOY_EVAL)
    assert out.returncode == 0, out.stderr[-3000:]
    model, cfg = toy_model
    segmenter = VideoSegmenter.from_checkpoint(toy_weights, cfg, "cpu")
    results = list(segmenter.segment(frames))
    assert [r.index for r in results] == list(range(len(frames)))
    for r in results:
        written = np.array(Image.open(tmp_path / "res" / "masks" / f"{r.index:05d}.png"))
        assert np.array_equal(written, r.mask)
        assert r.probability.shape == r.mask.shape == frames[0].shape[:2]
        assert np.array_equal(r.mask, (r.probability > 0.5).astype(np.uint8))


def test_flip_views_are_mirrors_of_each_other(toy_root, toy_model):
    model, _ = toy_model
    frames = _frames(toy_root, 7)
    mirrored = [np.ascontiguousarray(f[:, ::-1]) for f in frames]
    plain = list(VideoSegmenter(model, InferenceOptions(window=4)).segment(frames))
    flip = VideoSegmenter(model, InferenceOptions(window=4, flip=True))
    both, both_mirrored = list(flip.segment(frames)), list(flip.segment(mirrored))
    plain_mirrored = list(VideoSegmenter(model, InferenceOptions(window=4)).segment(mirrored))
    for a, b, p, q in zip(both, both_mirrored, plain, plain_mirrored):
        # Each view has its own memory stream: the flipped view of a video is the plain view of its mirror.
        assert np.allclose(a.probability, (p.probability + q.probability[:, ::-1]) / 2, atol=1e-6)
        # So flip testing is mirror-equivariant: the mirrored video gives the mirrored result.
        assert np.allclose(b.probability, a.probability[:, ::-1], atol=1e-6)
    # A horizontally symmetric video: both views see the same input, so the flipped view adds only
    # the mirror of the plain view's answer.
    symmetric = [np.ascontiguousarray(np.concatenate([f[:, :108], f[:, :108][:, ::-1]], axis=1)) for f in frames]
    off = list(VideoSegmenter(model, InferenceOptions(window=4)).segment(symmetric))
    on = list(flip.segment(symmetric))
    for a, b in zip(off, on):
        assert np.allclose(b.probability, (a.probability + a.probability[:, ::-1]) / 2, atol=1e-6)


def test_multiscale_defaults_and_repeats(toy_root, toy_model):
    model, _ = toy_model
    frames = _frames(toy_root, 6)
    default = list(VideoSegmenter(model, InferenceOptions(window=4)).segment(frames))
    same_twice = list(VideoSegmenter(model, InferenceOptions(window=4, scales=[1.0, 1.0])).segment(frames))
    scaled = list(VideoSegmenter(model, InferenceOptions(window=4, scales=[1.0, 0.75, 1.25])).segment(frames))
    for d, s, m in zip(default, same_twice, scaled):
        assert np.allclose(d.probability, s.probability, atol=1e-6)
        assert m.mask.shape == d.mask.shape and m.probability.dtype == np.float32
    assert any(not np.allclose(d.probability, m.probability) for d, m in zip(default, scaled))


def _shown(column, value):
    """A CSV value as the report shows it."""
    if column in ("Sequence", "Class"):
        return value
    if column in ("Frames", "Videos"):
        return str(int(float(value)))
    return f"{float(value):.3f}" if column == "MAE" else f"{100 * float(value):.1f}"


def test_every_report_page_shows_its_csvs_and_images(all_results, browser, tmp_path):
    out, _ = all_results
    page = browser.new_page()
    pages = sorted(out.glob("*/step_7/report/index.html"))
    assert len(pages) == 9
    for index in pages:
        results = index.parent.parent
        page.goto(index.as_uri())
        images = page.eval_on_selector_all("img", "els => els.map(e => [e.getAttribute('src'), e.naturalWidth])")
        assert images, index
        for src, width in images:  # every picture referenced is beside the page and decodes
            assert (index.parent / src).is_file() and width > 0, (index, src)
        sequence_csv = sorted(results.glob("per-sequence*.csv"))
        if not sequence_csv:  # YouTube-VOS: masks only, no ground truth to score
            assert page.query_selector("#per-sequence") is None
            continue
        rows = read_csv(sequence_csv[0])
        key = "J-Mean" if "J-Mean" in rows[0] else "S"
        rows.sort(key=lambda r: float(r[key]))
        table = page.eval_on_selector("#per-sequence", "t => Array.from(t.rows).map(r => Array.from(r.cells)"
                                                       ".map(c => c.textContent))")
        assert table[0] == list(rows[0])
        assert table[1:] == [[_shown(c, r[c]) for c in r] for r in rows], index
    summary = out / "summary-step_7" / "index.html"
    page.goto(summary.as_uri())
    links = page.eval_on_selector_all("#summary a", "els => els.map(e => e.getAttribute('href'))")
    assert len(links) == 9 and all((summary.parent / link).is_file() for link in links)
    page.goto(pages[0].as_uri())
    page.screenshot(path=str(tmp_path / "report.png"), full_page=True)
    assert (tmp_path / "report.png").stat().st_size > 0
