"""Bad input, table-driven: each case must give a non-zero exit, exactly one error line naming the
key or file, no traceback, and leave written or deleted nothing it should not."""
import argparse
import json
import logging
import os
import shutil
import signal
import subprocess
import sys

import cv2
import numpy as np
import pytest

from config import RULES, Config, ConfigError, config_error_lines, load_config
from dataloaders.data_check import DataError, check_training_data
from dataloaders.train_datasets import build_train_dataset
from evaluation.benchmark_run import score_only
from evaluation.benchmarks import BENCHMARKS, DatasetOptions
from evaluation.options import ScoreOnlyRun
from networks.checkpoints import checkpoints_newest_first
from tests.conftest import ROOT
from tests.helpers.builders import CPU, TOY_EVAL, summary, tiny_cfg
from tests.helpers.runs import (
    EVAL_TOY,
    error_line,
    eval_davis,
    one_error_line,
    run_script,
)
from training.launch import train
from utils.errors import SettingError


def files_under(folder) -> dict:
    out = {}
    for base, _, names in os.walk(folder):
        for name in names:
            path = os.path.join(base, name)
            out[path] = os.path.getsize(path)
    return out


# ---- settings ----

def _wrong_type(default):
    """A command-line value whose type the key cannot take."""
    if isinstance(default, bool):
        return "'maybe'"
    if isinstance(default, (int, float)):
        return "'many'"
    if isinstance(default, (list, tuple)):
        return "7"
    return "[1, 2]"


def _config_cases():
    defaults = Config()
    cases = [(key, _wrong_type(getattr(defaults, key))) for key in defaults.keys()]
    cases += [
        ("DATA_RANDOMCROP", "(5,)"), ("DATA_RANDOMCROP", "(0,-3)"), ("DATA_RANDOMCROP", "(28, 200)"),
        ("TRAIN_SEED", "-1"), ("DATA_CURR_SEQ_LEN", "0"), ("TRAIN_SAVE_STEP", "0"), ("TRAIN_LOG_STEP", "0"),
        ("TRAIN_TOTAL_STEPS", "-5"), ("TRAIN_BATCH_SIZE", "0"), ("MODEL_MAX_MEM", "2"), ("TRAIN_MAX_KEEP_CKPT", "0"),
        ("TEST_MAX_SIZE", "10"), ("TRAIN_AMP", "fp8"), ("DATASETS", "[]"), ("DATASETS", "['coco']"),
        ("MODEL_BACKBONE", "vgg16"), ("DATA_RANDOMFLIP", "1.5"), ("TRAIN_LR", "0"), ("TEST_DATASET", "nope"),
        ("DEVICE", "gpu"), ("EXP_NAME", "a/b"), ("TEST_MULTISCALE", "[]"), ("TEST_MULTISCALE", "[0, 1]"),
        ("TRAIN_DISTILLATION_LOSS_WEIGHT", "2"), ("DATA_WORKERS", "-1"), ("TRAIN_WARM_UP_STEPS", "60000"),
        ("TRAIN_START_STEP", "60000"), ("DATA_MAX_SCALE_FACTOR", "0.5"), ("TRAIN_MIN_LR", "1.0"),
    ]
    return cases


@pytest.mark.parametrize("key,value", _config_cases())
def test_each_bad_setting_is_one_line_naming_the_key(key, value):
    args = argparse.Namespace(preset=None, exp_name=None, opts=[key, value], print_config=False)
    with pytest.raises(ConfigError) as err:
        load_config(args)
    message = config_error_lines(err.value)
    assert isinstance(message, str) and "\n" not in message, message
    assert message.startswith("config error: ") and key in message


def test_every_rule_names_an_existing_key():
    assert set(RULES) <= set(Config().keys())


def test_bad_setting_from_the_command_line_writes_nothing(tmp_path):
    for entry in ("train.py", "eval.py"):
        out = subprocess.run([sys.executable, entry, "--opts", "DIR_ROOT", str(tmp_path), "TRAIN_SEED", "-1"],
                             cwd=ROOT, capture_output=True, text=True, timeout=120)
        assert out.returncode != 0
        assert "TRAIN_SEED -1" in error_line(out.stderr)
    assert os.listdir(tmp_path) == []


# ---- training data ----

@pytest.fixture
def data_copy(toy_root, tmp_path):
    root = tmp_path / "data"
    shutil.copytree(toy_root, root)
    return str(root)


def _garble(path: str) -> None:
    data = bytearray(open(path, "rb").read())
    middle = len(data) // 2
    data[middle:middle + 300] = bytes(np.random.RandomState(0).randint(0, 256, 300).astype(np.uint8))
    open(path, "wb").write(bytes(data))  # the end marker stays: only a full decode notices


def _only_video(root: str, name: str) -> str:
    davis = os.path.join(root, "DAVIS")
    with open(os.path.join(davis, "ImageSets/2017/train.txt"), "w") as f:
        f.write(name + "\n")
    return os.path.join(davis, "JPEGImages/480p", name)


def _train_fails(cfg, *expected: str) -> str:
    assert train(cfg, CPU) == 1
    error = summary(cfg)["error"]
    assert "\n" not in error and all(e in error for e in expected), error
    assert error in open(os.path.join(cfg.DIR_RESULT, "train.log")).read()
    return error


def test_mask_of_another_size_stops_before_step_0(data_copy, tmp_path):
    mask = os.path.join(data_copy, "DAVIS/Annotations/480p/toy-train-03/00005.png")
    from PIL import Image
    Image.new("P", (50, 40)).save(mask)
    cfg = tiny_cfg(data_copy, tmp_path / "run", DATASETS=["davis2017"], TRAIN_TOTAL_STEPS=3)
    _train_fails(cfg, "toy-train-03/00005.png is 50x40", "216x120")
    assert not checkpoints_newest_first(cfg.DIR_CKPT)


def test_damaged_jpeg_in_a_worker_is_one_line(data_copy, tmp_path):
    frames = _only_video(data_copy, "toy-train-01")
    for name in os.listdir(frames):
        _garble(os.path.join(frames, name))
    cfg = tiny_cfg(data_copy, tmp_path / "run", DATASETS=["davis2017"], DATA_WORKERS=1, TRAIN_TOTAL_STEPS=3)
    _train_fails(cfg, "corrupt image", "toy-train-01/")
    # Skipping bad samples: it tries, then says that it gave up.
    skipping = tiny_cfg(data_copy, tmp_path / "skip", DATASETS=["davis2017"], TRAIN_TOTAL_STEPS=3,
                        DATA_SKIP_BAD_SAMPLES=True)
    with pytest.warns(UserWarning):
        _train_fails(skipping, "gave up after skipping 100 bad samples", "corrupt image")


def test_skip_bad_samples_trains_around_a_damaged_video(data_copy, tmp_path):
    frames = os.path.join(data_copy, "DAVIS/JPEGImages/480p/toy-train-01")
    for name in os.listdir(frames):
        _garble(os.path.join(frames, name))
    os.remove(os.path.join(data_copy, "DAVIS/Annotations/480p/toy-train-02/00003.png"))
    cfg = tiny_cfg(data_copy, tmp_path / "run", DATASETS=["davis2017"], TRAIN_TOTAL_STEPS=2,
                   DATA_SKIP_BAD_SAMPLES=True, DATA_DAVIS_REPEAT=4)
    with pytest.warns(UserWarning):
        assert train(cfg, CPU) == 0
    assert summary(cfg)["status"] == "completed"
    without = tiny_cfg(data_copy, tmp_path / "strict", DATASETS=["davis2017"], TRAIN_TOTAL_STEPS=2)
    _train_fails(without, "toy-train-02/00003.png")


def test_data_check_result_is_cached_until_a_file_changes(data_copy, tmp_path):
    sets = build_train_dataset(tiny_cfg(data_copy, tmp_path)).videos_by_set()
    cache, log = str(tmp_path / "cache.json"), logging.getLogger("tests")
    assert check_training_data(sets, cache, False, log) == 0
    assert sorted(json.load(open(cache))) == sorted(sets)
    # Same size and time, other bytes: the cached result stands (no header is read again).
    mask = sets["davis2017"][0].masks[0]
    stat = os.stat(mask)
    open(mask, "wb").write(b"\0" * stat.st_size)
    os.utime(mask, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    assert check_training_data(sets, cache, False, log) == 0
    os.utime(mask)  # a changed file: checked again
    with pytest.raises(DataError, match="unreadable image header.*00000.png"):
        check_training_data(sets, cache, False, log)


# ---- evaluation ----




def test_eval_uses_the_newest_checkpoint_of_the_experiment(toy_root, toy_weights, tmp_path):
    opts = ["--opts", "DIR_DATA", toy_root, "DIR_ROOT", str(tmp_path), *TOY_EVAL]
    out = run_script(*EVAL_TOY, "--exp_name", "mine", *opts)
    assert out.returncode != 0 and "no checkpoint to evaluate" in error_line(out.stderr)
    assert "mine" in error_line(out.stderr)
    ckpt_dir = tmp_path / "log" / "mine" / "ckpt"
    ckpt_dir.mkdir(parents=True)
    shutil.copy(toy_weights, ckpt_dir / "save_step_7.pth")
    out = run_script(*EVAL_TOY, "--exp_name", "mine", *opts)
    assert out.returncode == 0, out.stderr[-2000:]
    results = tmp_path / "log" / "mine" / "eval" / "davis2016-val" / "step_7"
    assert str(ckpt_dir / "save_step_7.pth") in out.stdout
    record = json.load(open(results / "config.json"))
    assert record["checkpoint"] == str(ckpt_dir / "save_step_7.pth")
    # Run again: the folder holds that run's results, so it is refused; --overwrite replaces them.
    again = run_script(*EVAL_TOY, "--exp_name", "mine", *opts)
    assert again.returncode != 0 and "--overwrite" in error_line(again.stderr)
    assert run_script(*EVAL_TOY, "--exp_name", "mine", "--overwrite", *opts).returncode == 0


def test_results_folder_of_someone_else_is_never_replaced(toy_root, toy_weights, tmp_path):
    out_dir = tmp_path / "mine"
    out_dir.mkdir()
    (out_dir / "notes.txt").write_text("mine")
    for extra in ([], ["--overwrite"]):
        out = run_script(*EVAL_TOY, "--ckpt_path", toy_weights, "--out", str(out_dir), *extra, "--opts", "DIR_DATA",
                         toy_root, *TOY_EVAL)
        assert out.returncode != 0 and str(out_dir) in error_line(out.stderr)
    assert os.listdir(out_dir) == ["notes.txt"]


def _frames_folder(folder, count, size):
    folder.mkdir()
    for t in range(count):
        frame = np.full((size[1], size[0], 3), 40 + 5 * t, np.uint8)
        cv2.imwrite(str(folder / f"{t:05d}.jpg"), frame)
    return str(folder)


def test_own_video_bad_input(toy_weights, tmp_path):
    base = ["--ckpt_path", toy_weights, "--opts", *TOY_EVAL]
    # --max_side below what the network accepts.
    out = run_script(*EVAL_TOY, "--video", _frames_folder(tmp_path / "ok", 3, (64, 48)), "--max_side", "10",
                   "--out", str(tmp_path / "o1"), *base)
    assert out.returncode != 0 and "--max_side 10" in error_line(out.stderr)
    # Frames too small.
    small = _frames_folder(tmp_path / "small", 3, (24, 24))
    out = run_script(*EVAL_TOY, "--video", small, "--out", str(tmp_path / "o2"), *base)
    line = error_line(out.stderr)
    assert out.returncode != 0 and "24x24" in line and "29" in line
    # A video damaged in the middle: masks of the good frames are kept, both counts are named.
    video = str(tmp_path / "clip.mp4")
    writer = cv2.VideoWriter(video, cv2.VideoWriter_fourcc(*"mp4v"), 10, (96, 64))
    for t in range(60):
        frame = np.full((64, 96, 3), 2 * t, np.uint8)
        frame[10:30, t % 60:t % 60 + 20] = 255
        writer.write(frame)
    writer.release()
    _garble(video)
    out = run_script(*EVAL_TOY, "--video", video, "--out", str(tmp_path / "o3"), *base)
    line = error_line(out.stderr)
    assert out.returncode != 0 and "clip.mp4" in line and "of the 60" in line
    kept = len(os.listdir(tmp_path / "o3" / "masks"))
    assert 0 < kept < 60 and f"{kept} frames decoded" in line
    out = run_script(*EVAL_TOY, "--video", video, "--accept_partial_video", "--out", str(tmp_path / "o4"), *base)
    assert out.returncode == 0, out.stderr[-2000:]
    assert len(os.listdir(tmp_path / "o4" / "masks")) == kept


def test_failed_writes_in_eval_leave_no_empty_files(toy_root, toy_weights, tmp_path):
    def limit():
        import resource
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (1, 1))  # every file write fails, as on a full disk
    out_dir = tmp_path / "res"
    out = run_script(*EVAL_TOY, "--ckpt_path", toy_weights, "--out", str(out_dir), "--opts", "DIR_DATA", toy_root,
                     *TOY_EVAL, preexec_fn=limit)
    assert out.returncode != 0
    line = error_line(out.stderr)
    assert "could not write" in line and str(out_dir) in line
    assert all(size > 0 for size in files_under(out_dir).values())


# ---- weights and the demo's command line ----

def test_a_checkpoint_folder_or_a_link_that_leads_nowhere(toy_root, toy_weights, tmp_path):
    from tests.helpers.runs import one_error_line as error_of
    from tests.helpers.runs import run_script
    opts = ["--opts", "DIR_DATA", toy_root, *TOY_EVAL]
    (tmp_path / "empty").mkdir()
    line = error_of(run_script("eval.py", "--ckpt_path", str(tmp_path / "empty"), "--out", str(tmp_path / "a"), *opts))
    assert "is a folder holding no save_step" in line
    loop = tmp_path / "loop.pth"
    os.symlink(loop, loop)
    line = error_of(run_script("eval.py", "--ckpt_path", str(loop), "--out", str(tmp_path / "b"), *opts))
    assert "leads nowhere" in line and "loop.pth" in line
    # A run's ckpt/ folder means its newest checkpoint.
    ckpt = tmp_path / "run" / "ckpt"
    ckpt.mkdir(parents=True)
    shutil.copy(toy_weights, ckpt / "save_step_7.pth")
    out = run_script("eval.py", "--ckpt_path", str(ckpt), "--out", str(tmp_path / "c"), *opts)
    assert out.returncode == 0, out.stderr[-2000:]
    assert json.load(open(tmp_path / "c" / "eval.json"))["checkpoint"].endswith("save_step_7.pth")


@pytest.mark.parametrize("flags, words", [(["--max_upload_mb", "-1"], "--max_upload_mb -1"),
                                          (["--max_side", "10"], "--max_side 10"),
                                          (["--port", "PORT_IN_USE"], "port")])
def test_demo_command_line_errors_are_one_line(toy_weights, tmp_path, flags, words):
    import socket

    from tests.helpers.runs import one_error_line as error_of
    from tests.helpers.runs import run_script
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        flags = [str(busy.getsockname()[1]) if f == "PORT_IN_USE" else f for f in flags]
        out = run_script("demo.py", "--preset", "toy", "--ckpt_path", toy_weights, *flags, "--opts", "DIR_ROOT",
                         str(tmp_path), timeout=180)
    assert words in error_of(out)


def test_short_sequences_are_refused_before_inference(davis_copy, toy_weights, tmp_path):
    seq = davis_copy / "JPEGImages" / "480p" / "toy-val-01"
    for frame in sorted(os.listdir(seq))[2:]:
        os.remove(seq / frame)
        os.remove(davis_copy / "Annotations" / "480p" / "toy-val-01" / frame.replace(".jpg", ".png"))
    line = one_error_line(eval_davis(davis_copy, toy_weights, tmp_path / "res"))
    assert "'toy-val-01'" in line
    assert not os.path.exists(tmp_path / "res")


def test_score_only_with_nothing_to_score_is_an_error(toy_root, tmp_path):
    # Before: "success" without reading the results folder.
    cfg = Config()
    cfg.set("DIR_YTB_EVAL", os.path.join(toy_root, "YTB", "valid"))
    with pytest.raises(SettingError, match="nothing to score"):
        score_only(cfg, ScoreOnlyRun(str(tmp_path), "youtubevos"))


def test_empty_davis_split_is_one_line(davis_copy):
    (davis_copy / "ImageSets" / "2016" / "val.txt").write_text("\n")
    with pytest.raises(DataError, match="lists no sequences"):
        BENCHMARKS["davis2016"].read(str(davis_copy), DatasetOptions())
