"""`--dataset all` owns its summary like any evaluation, and no mode writes into a training run's folder."""
import os

import pytest

from tests.helpers.builders import TOY_EVAL
from tests.helpers.runs import one_error_line, run_script


def _snapshot(folder):
    return {os.path.join(base, n): os.path.getmtime(os.path.join(base, n))
            for base, _, names in os.walk(folder) for n in names}


def test_a_users_files_where_the_summary_goes_are_refused_before_any_work(toy_root, toy_weights, tmp_path):
    out = tmp_path / "out"
    (out / "summary-step_7").mkdir(parents=True)
    (out / "summary-step_7" / "summary.csv").write_text("the user's own table")
    before = _snapshot(out)
    done = run_script("eval.py", "--dataset", "all", "--ckpt_path", toy_weights, "--out", str(out), "--opts",
                      "DIR_DATA", toy_root, *TOY_EVAL)
    line = one_error_line(done)
    assert "summary-step_7" in line and "not an evaluation of this project" in line
    assert _snapshot(out) == before  # not one benchmark was evaluated before the refusal


@pytest.mark.parametrize("flags", [["--dataset", "all"], ["--dataset", "davis2016"], ["--video", "CLIP"],
                                   ["--score_only", "RUN"]], ids=["all", "one benchmark", "video", "score_only"])
def test_a_training_run_folder_is_refused_in_every_mode(toy_root, toy_weights, tmp_path, flags):
    run = tmp_path / "log" / "toy"
    (run / "ckpt").mkdir(parents=True)
    (run / "run.json").write_text("{}")
    before = _snapshot(run)
    flags = [str(run) if f == "RUN" else os.path.join(toy_root, "videos", "clip.avi") if f == "CLIP" else f
             for f in flags]
    out = [] if "--score_only" in flags else ["--out", str(run), "--ckpt_path", toy_weights]
    done = run_script("eval.py", *flags, *out, "--opts", "DIR_DATA", toy_root, *TOY_EVAL)
    assert "training run's folder" in one_error_line(done)
    assert _snapshot(run) == before
