"""`--dataset all` owns its summary like any evaluation, and no mode writes into a training run's folder."""
import json
import os
import signal
import subprocess
import sys
import time

import pytest

from evaluation.results_folder import LOCK, RECORD
from tests.conftest import ROOT
from tests.helpers.builders import TOY_EVAL
from tests.helpers.runs import eval_davis, files_under, one_error_line, run_script
from utils.folder_lock import FolderLock


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


def test_overwrite_never_touches_a_training_run_or_a_users_files(davis_copy, toy_weights, tmp_path):
    run_dir = tmp_path / "log" / "toy"
    (run_dir / "ckpt").mkdir(parents=True)
    for name in ("run.json", "summary.json", "train.log", "config.json", "ckpt/save_step_3.pth"):
        (run_dir / name).write_text("a training run's file")
    before = files_under(run_dir)
    out = eval_davis(davis_copy, toy_weights, run_dir, "--overwrite")
    assert "training run" in one_error_line(out)
    assert files_under(run_dir) == before
    # An earlier evaluation: --overwrite replaces its files, keeps the user's note inside it.
    results = tmp_path / "res"
    assert eval_davis(davis_copy, toy_weights, results).returncode == 0
    (results / "my_notes.txt").write_text("mine")
    (results / "toy-val-00" / "my_drawing.png").write_bytes(b"mine")
    # Weights that do not load: --overwrite deletes nothing (it acts only once the weights loaded).
    before = files_under(results)
    broken = tmp_path / "broken.pth"
    broken.write_bytes(b"not a checkpoint")
    assert "broken.pth" in one_error_line(eval_davis(davis_copy, str(broken), results, "--overwrite"))
    assert files_under(results) == before
    assert eval_davis(davis_copy, toy_weights, results, "--overwrite").returncode == 0
    assert (results / "my_notes.txt").read_text() == "mine"
    assert (results / "toy-val-00" / "my_drawing.png").read_bytes() == b"mine"
    assert json.loads((results / RECORD).read_text())["status"] == "complete"


def test_a_second_evaluation_into_a_busy_folder_is_refused(davis_copy, toy_weights, tmp_path):
    results = tmp_path / "res"
    held = FolderLock(str(results), LOCK, "results folder")
    held.acquire("")  # another evaluation holds the folder
    try:
        line = one_error_line(eval_davis(davis_copy, toy_weights, results))
        assert f"pid {os.getpid()}" in line
    finally:
        held.release(remove=True)
    assert os.listdir(results) == []


def _lengthen_val_sequences(davis, frames: int) -> None:
    """Each toy val sequence repeated to `frames` frames (hard links): an evaluation long enough to interrupt."""
    for kind, ext in (("JPEGImages", ".jpg"), ("Annotations", ".png")):
        for sequence in (davis / kind / "480p").glob("toy-val-*"):
            existing = sorted(sequence.glob("*" + ext))
            for index in range(len(existing), frames):
                os.link(existing[index % len(existing)], sequence / f"{index:05d}{ext}")


def test_ctrl_c_in_eval_is_one_line(davis_copy, toy_weights, tmp_path):
    # Its masks take seconds to write on any CPU, so the signal comes while they are written, not after.
    _lengthen_val_sequences(davis_copy, 1000)
    results = tmp_path / "res"
    # The child must receive Ctrl-C as from a terminal. A process started while SIGINT is ignored
    # inherits that: the whole test run does when a script starts it in the background (`cmd &`
    # in a non-interactive shell ignores SIGINT). A Python handler becomes the default across exec.
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        proc = subprocess.Popen([sys.executable, "eval.py", "--ckpt_path", toy_weights, "--out", str(results),
                                 "--opts", "DIR_DAVIS", str(davis_copy), *TOY_EVAL], cwd=ROOT,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    finally:
        signal.signal(signal.SIGINT, previous)
    deadline = time.time() + 240
    while time.time() < deadline and proc.poll() is None and not (results / RECORD).exists():
        time.sleep(0.05)
    proc.send_signal(signal.SIGINT)
    stdout, stderr = proc.communicate(timeout=120)
    if proc.returncode == 0:
        pytest.fail("the evaluation finished before it could be interrupted")
    line = one_error_line(subprocess.CompletedProcess([], proc.returncode, stdout, stderr))
    assert proc.returncode == 130 and "--resume" in line  # resuming is test_an_interrupted_evaluation_resumes
