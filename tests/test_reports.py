"""The pages a researcher reads, in headless Chromium: reports sort and show large thumbnails with the
ground truth, the video report plays its video, and a comparison page shows exactly what the CSVs hold."""
import csv
import os

import pytest
import torch

from evaluation.page import cell
from networks.checkpoints import save_lsta
from networks.lsta import LSTA
from tests.helpers.builders import TOY_EVAL, preset_config
from tests.helpers.runs import one_error_line, run_script


def _csv(path):
    with open(path) as f:
        return list(csv.DictReader(f))


def _cells(page, selector):
    return page.eval_on_selector(selector, "t => Array.from(t.rows).map(r => Array.from(r.cells).map(c => "
                                           "c.textContent))")


@pytest.fixture(scope="module")
def two_evaluations(toy_root, tmp_path_factory):
    """The toy DAVIS-2016 val scored for two checkpoints (different random weights), as eval.py writes them."""
    root = tmp_path_factory.mktemp("two")
    cfg = preset_config("toy").validate()
    folders = []
    for seed, step in ((1, 100), (2, 200)):
        torch.manual_seed(seed)
        path = str(root / f"save_step_{step}.pth")
        save_lsta(path, LSTA.from_config(cfg), step=step, config=cfg.to_dict())
        out = run_script("eval.py", "--ckpt_path", path, "--out", str(root / f"step_{step}"), "--opts",
                         "DIR_DATA", toy_root, *TOY_EVAL)
        assert out.returncode == 0, out.stderr[-2000:]
        folders.append(root / f"step_{step}")
    return folders


def test_a_comparison_page_shows_what_the_csvs_hold(two_evaluations, browser, tmp_path):
    a, b = two_evaluations
    # no data settings: the thumbnails' frames are found where the evaluations recorded them
    out = run_script("eval.py", "--compare", str(a), str(b), "--out", str(tmp_path / "cmp"))
    assert out.returncode == 0, out.stderr[-2000:]
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    page.goto((tmp_path / "cmp" / "index.html").as_uri())
    headline = _cells(page, "#compare-headline")
    first, second = _csv(a / "global_results-val.csv")[0], _csv(b / "global_results-val.csv")[0]
    assert [row[0] for row in headline[1:]] == list(first)
    for measure, shown_a, shown_b, shown_diff in headline[1:]:
        assert (shown_a, shown_b) == (cell(measure, first[measure]), cell(measure, second[measure]))
        difference = float(second[measure]) - float(first[measure])
        assert shown_diff == ("+" if difference > 0 else "") + cell(measure, repr(difference))
    rows_a = {r["Sequence"]: r for r in _csv(a / "per-sequence_results-val.csv")}
    rows_b = {r["Sequence"]: r for r in _csv(b / "per-sequence_results-val.csv")}
    shown = _cells(page, "#compare-sequences")[1:]
    assert sorted(r[0] for r in shown) == sorted(rows_a)
    for name, shown_a, shown_b, _ in shown:
        assert (shown_a, shown_b) == (cell("J-Mean", rows_a[name]["J-Mean"]), cell("J-Mean", rows_b[name]["J-Mean"]))
    drops = [float(r[2]) - float(r[1]) for r in shown]
    assert drops == sorted(drops)  # the largest drop first
    pictures = page.eval_on_selector_all("img", "els => els.map(e => [e.getAttribute('src'), e.naturalHeight])")
    assert ("differing_frames.png" in [p[0] for p in pictures]) and all(h > 0 for _, h in pictures)
    page.screenshot(path=str(tmp_path / "compare.png"), full_page=True)


def test_a_comparison_needs_per_frame_scores(two_evaluations, tmp_path):
    a, _ = two_evaluations
    (tmp_path / "other").mkdir()
    line = one_error_line(run_script("eval.py", "--compare", str(a), str(tmp_path / "other"), "--out",
                                     str(tmp_path / "cmp")))
    assert "other" in line and "--score_only" in line


def test_a_report_sorts_and_shows_large_thumbnails_with_the_ground_truth(two_evaluations, browser):
    a, _ = two_evaluations
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    page.goto((a / "report" / "index.html").as_uri())
    before = _cells(page, "#per-sequence")[1:]
    assert [float(r[1]) for r in before] == sorted(float(r[1]) for r in before)  # worst first, without the script
    page.click("#per-sequence th:nth-child(2)")
    page.click("#per-sequence th:nth-child(2)")
    after = [float(r[1]) for r in _cells(page, "#per-sequence")[1:]]
    assert after == sorted(after, reverse=True)
    links = page.eval_on_selector_all("a", "els => els.map(e => e.getAttribute('href'))")
    assert all((a / "report" / href).exists() for href in links if href.endswith(".csv"))
    assert any(href.endswith("per-frame_results.csv") for href in links)
    heights = page.eval_on_selector_all("img[src^='strip_']", "els => els.map(e => [e.naturalHeight, "
                                                               "e.getBoundingClientRect().height])")
    assert heights and all(natural >= 160 and shown >= 160 for natural, shown in heights)


def test_a_video_report_plays_its_overlay_video(toy_root, toy_weights, browser, tmp_path):
    out = run_script("eval.py", "--video", os.path.join(toy_root, "videos", "clip.avi"), "--ckpt_path", toy_weights,
                     "--out", str(tmp_path / "video"), "--opts", *TOY_EVAL)
    assert out.returncode == 0, out.stderr[-2000:]
    page = browser.new_page()
    page.goto((tmp_path / "video" / "report" / "index.html").as_uri())
    page.wait_for_function("() => document.querySelector('#overlay-video').readyState >= 2", timeout=30_000)
    start = page.eval_on_selector("#overlay-video", "v => { v.play(); return v.currentTime; }")
    page.wait_for_timeout(500)
    assert page.eval_on_selector("#overlay-video", "v => v.currentTime") > start
