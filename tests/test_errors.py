"""A user's mistake is one line; a bug keeps its traceback: both ways, in train.py and eval.py.

The entry points run in this process through runpy (as `python train.py` runs them), so that a
bug can be planted in one of the project's own functions.
"""
import json
import os
import runpy
import sys

import pytest

from tests.conftest import ROOT

PLANTED = "planted shape mismatch: (2, 16, 9, 9) vs (2, 16, 9, 10)"
TINY = ["DATA_RANDOMCROP", "(65, 65)", "DATA_CURR_SEQ_LEN", "2", "TRAIN_BATCH_SIZE", "2", "DATA_WORKERS", "0",
        "TRAIN_WARM_UP_STEPS", "0", "TRAIN_TOTAL_STEPS", "1", "DATA_SHORT_EDGE_LEN", "70"]


def run_entry(monkeypatch, script: str, *args: str) -> None:
    monkeypatch.chdir(ROOT)
    monkeypatch.setattr(sys, "argv", [script, *args])
    runpy.run_path(os.path.join(ROOT, script), run_name="__main__")


def _plant(monkeypatch, target: str) -> None:
    def broken(*_args, **_kwargs):
        raise RuntimeError(PLANTED)
    module, cls, name = target.rsplit(".", 2)
    monkeypatch.setattr(getattr(__import__(module, fromlist=[cls]), cls), name, broken)


def test_train_bug_keeps_its_traceback_and_user_error_is_one_line(monkeypatch, toy_root, tmp_path, capsys):
    base = ["--preset", "toy", "--opts", "DIR_DATA", toy_root, "DIR_ROOT", str(tmp_path), *TINY]
    with pytest.raises(SystemExit) as done:  # a user error: a missing initial file
        run_entry(monkeypatch, "train.py", *base, "PRETRAIN", "True", "PRETRAIN_MODEL", str(tmp_path / "none.pth"))
    assert done.value.code == 1
    summary = json.loads((tmp_path / "log" / "toy" / "summary.json").read_text())
    assert "none.pth" in summary["error"] and "\n" not in summary["error"]
    assert "Traceback" not in capsys.readouterr().err

    _plant(monkeypatch, "training.trainer.Trainer.frame_losses")
    with pytest.raises(RuntimeError, match="planted shape mismatch"):
        run_entry(monkeypatch, "train.py", *base, "--exp_name", "bug")
    log = (tmp_path / "log" / "bug" / "train.log").read_text()
    assert "Traceback" in log and PLANTED in log  # the bug's traceback is in the run's log too
    assert json.loads((tmp_path / "log" / "bug" / "summary.json").read_text())["status"] == "failed"


def test_eval_bug_keeps_its_traceback_and_user_error_is_one_line(monkeypatch, toy_root, toy_weights, tmp_path,
                                                                 capsys):
    base = ["--ckpt_path", toy_weights, "--opts", "DIR_DATA", toy_root, "MODEL_MAX_MEM", "4", "TEST_BACKEND", "torch"]
    with pytest.raises(SystemExit) as done:  # a user error: weights that are not there
        run_entry(monkeypatch, "eval.py", "--ckpt_path", str(tmp_path / "missing.pth"), "--out", str(tmp_path / "a"),
                  "--opts", "DIR_DATA", toy_root)
    assert str(done.value.code).startswith("error: ") and "missing.pth" in str(done.value.code)
    assert "\n" not in str(done.value.code)

    _plant(monkeypatch, "inference.segmenter.VideoSegmenter.segment_videos")
    with pytest.raises(RuntimeError, match="planted shape mismatch"):
        run_entry(monkeypatch, "eval.py", *base, "--out", str(tmp_path / "b"))
    assert "error:" not in capsys.readouterr().err
