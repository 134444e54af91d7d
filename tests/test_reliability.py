"""Nothing a user owns is overwritten or deleted, nothing wrong is scored as right: one family per test.

Each case runs the product as a user would (eval.py / train.py in a subprocess, or the Python API)
and checks the one line it prints and what is left on disk.
"""
import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import torch
from PIL import Image

from config import Config, ConfigError, config_error_lines, load_config
from dataloaders.train_datasets import youtubevos_videos
from evaluation.benchmark_run import score_only
from evaluation.benchmarks import BENCHMARKS, DatasetOptions, score
from evaluation.evaluators.saliency import PROBABILITIES
from evaluation.options import ScoreOnlyRun
from evaluation.results_folder import LOCK, RECORD
from inference.segmenter import VideoSegmenter
from networks.checkpoints import read_training, save_lsta
from networks.lsta import LSTA
from tests.conftest import ROOT
from training.launch import train
from utils.checkpoint import save_checkpoint
from utils.distributed import DistInfo
from utils.errors import DataError, SettingError
from utils.folder_lock import FolderLock
from utils.image_io import write_grey_png, write_palette_png

TOY_EVAL = ["TEST_BACKEND", "torch", "MODEL_MAX_MEM", "4", "TEST_ENCODE_BATCH", "3"]
CPU = DistInfo(0, 1, 0, torch.device("cpu"))


def run(script, *args, timeout=300, **kwargs):
    return subprocess.run([sys.executable, script, *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=timeout, **kwargs)


def one_error_line(out) -> str:
    assert out.returncode != 0, out.stdout[-2000:]
    assert "Traceback" not in out.stderr, out.stderr[-3000:]
    errors = [line for line in out.stderr.splitlines() if line.startswith(("error:", "config error:"))]
    assert len(errors) == 1, out.stderr[-3000:]
    return errors[0]


def files_under(folder) -> dict[str, float]:
    found = {}
    for base, _, names in os.walk(folder):
        for name in names:
            path = os.path.join(base, name)
            found[os.path.relpath(path, folder)] = os.path.getmtime(path)
    return found


@pytest.fixture()
def davis_copy(toy_root, tmp_path):
    """A private copy of the toy DAVIS layout (tests edit its split file)."""
    root = tmp_path / "DAVIS"
    shutil.copytree(os.path.join(toy_root, "DAVIS"), root)
    return root


def eval_davis(davis, weights, out, *extra, opts=()):
    return run("eval.py", "--ckpt_path", weights, "--out", str(out), *extra, "--opts", "DIR_DAVIS", str(davis),
               *TOY_EVAL, *opts)


# ---- names ----

@pytest.mark.parametrize("name", ["../../escaped", "/tmp/abs_seq", "toy-val-00/../toy-val-01", "a/b", "..", "."])
def test_a_listed_sequence_name_must_be_a_name(davis_copy, name):
    (davis_copy / "ImageSets" / "2016" / "val.txt").write_text(f"toy-val-00\n{name}\n")
    with pytest.raises(DataError) as err:
        BENCHMARKS["davis2016"].read(str(davis_copy), DatasetOptions())
    assert repr(name) in str(err.value) and "val.txt" in str(err.value)


def test_a_climbing_name_writes_nothing(davis_copy, toy_weights, tmp_path):
    # Before: a name climbing out of the results folder wrote masks over the ground truth, then
    # scored them against themselves (J 100.0, exit 0).
    (davis_copy / "ImageSets" / "2016" / "val.txt").write_text("toy-val-00\n../../Annotations/480p/toy-val-00\n")
    before = files_under(davis_copy)
    line = one_error_line(eval_davis(davis_copy, toy_weights, tmp_path / "res"))
    assert "val.txt" in line
    assert files_under(davis_copy) == before  # ground truth untouched
    assert not os.path.exists(tmp_path / "res") or not os.listdir(tmp_path / "res")


def test_fbms_split_names_and_results_inside_the_data_are_refused(toy_root, toy_weights, tmp_path):
    fbms = tmp_path / "FBMS"
    shutil.copytree(os.path.join(toy_root, "FBMS"), fbms)
    (fbms / "ImageSets" / "test.txt").write_text("toyfbms01\n../../../x\n")
    with pytest.raises(DataError, match="'../../../x'"):
        BENCHMARKS["fbms"].read(str(fbms), DatasetOptions())
    # Results written into the folder the frames and ground truth are read from: refused.
    (fbms / "ImageSets" / "test.txt").write_text("toyfbms01\n")
    before = files_under(fbms)
    out = run("eval.py", "--dataset", "fbms", "--ckpt_path", toy_weights, "--out", str(fbms / "Annotations"),
              "--opts", "DIR_FBMS", str(fbms), *TOY_EVAL)
    assert "overlaps" in one_error_line(out)
    assert files_under(fbms) == before


# ---- results folders: ownership, --overwrite, --resume, concurrency ----

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


# ---- architectures ----

def _toy_checkpoint(path, backbone: str) -> str:
    cfg = Config()
    cfg.apply_preset("toy")
    cfg.set("MODEL_BACKBONE", backbone)
    torch.manual_seed(1)
    model = LSTA.from_config(cfg)
    save_lsta(str(path), model, step=3, config=cfg.to_dict())
    return str(path)


def test_a_checkpoint_of_another_architecture_is_refused_or_rebuilt(davis_copy, tmp_path):
    r34 = _toy_checkpoint(tmp_path / "r34.pth", "resnet34")
    # --preset toy asks for ResNet-18: before, 222 loaded, 80 unexpected, evaluated as ResNet-18.
    out = run("eval.py", "--preset", "toy", "--ckpt_path", r34, "--out", str(tmp_path / "a"), "--opts",
              "DIR_DAVIS", str(davis_copy), *TOY_EVAL)
    line = one_error_line(out)
    assert "resnet34" in line and "resnet18" in line and "MODEL_BACKBONE" in line
    # Without a preset, the checkpoint's own record builds the model.
    out = run("eval.py", "--ckpt_path", r34, "--out", str(tmp_path / "b"), "--opts", "DIR_DAVIS", str(davis_copy),
              *TOY_EVAL)
    assert out.returncode == 0, out.stderr[-3000:]
    settings = Config()
    settings.set("TEST_BACKEND", "torch")  # inference settings only: the model is the checkpoint's
    segmenter = VideoSegmenter.from_checkpoint(r34, settings)
    assert segmenter.model.args.backbone == "resnet34"
    # A state_dict of a larger backbone loaded into a smaller model: refused, naming both.
    small = LSTA.from_config(_toy_cfg("resnet18"))
    from networks.weights import load_lsta_weights
    from utils.checkpoint import CheckpointError
    with pytest.raises(CheckpointError, match="resnet34.*resnet18"):
        load_lsta_weights(small, r34)
    unrecorded = tmp_path / "bare.pth"
    torch.save({"state_dict": LSTA.from_config(_toy_cfg("resnet34")).state_dict()}, unrecorded)
    with pytest.raises(CheckpointError, match="lacks"):
        load_lsta_weights(small, str(unrecorded))


def _toy_cfg(backbone):
    cfg = Config()
    cfg.apply_preset("toy")
    cfg.set("MODEL_BACKBONE", backbone)
    return cfg


# ---- ground-truth encodings ----

H, W = 24, 32


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


# ---- the Python API's inputs ----

@pytest.fixture(scope="module")
def toy_segmenter(toy_weights):
    cfg = Config()
    cfg.apply_preset("toy")
    cfg.set("MODEL_MAX_MEM", 4)
    return VideoSegmenter.from_checkpoint(toy_weights, cfg)


def _frames(count=3, shape=(48, 64)):
    rng = np.random.RandomState(0)
    return [rng.randint(0, 256, (*shape, 3), dtype=np.uint8) for _ in range(count)]


def _probabilities(segmenter, frames):
    return [f.probability for f in segmenter.segment(frames)]


def test_api_converts_grayscale_and_bgra_as_documented(toy_segmenter):
    grey = [f[:, :, 0].copy() for f in _frames()]
    as_bgr = _probabilities(toy_segmenter, [np.repeat(g[:, :, None], 3, axis=2) for g in grey])
    first = _probabilities(toy_segmenter, grey)
    # Before: NaN probabilities, different on every call (uninitialised channels).
    assert all(np.isfinite(p).all() for p in first)
    assert all(np.array_equal(a, b) for a, b in zip(first, as_bgr))
    assert all(np.array_equal(a, b) for a, b in zip(first, _probabilities(toy_segmenter, grey)))
    bgr = _frames()
    bgra = [np.dstack([f, np.full(f.shape[:2], 7, np.uint8)]) for f in bgr]
    assert all(np.array_equal(a, b) for a, b in zip(_probabilities(toy_segmenter, bgra),
                                                    _probabilities(toy_segmenter, bgr)))


@pytest.mark.parametrize("frames, words", [
    ([f.astype(np.float32) / 255 for f in _frames()], ["frame 0", "float32", "(48, 64, 3)"]),
    ([f.astype(np.uint16) * 256 for f in _frames()], ["frame 0", "uint16"]),
    ([np.full((48, 64, 3), np.nan, np.float32)], ["frame 0", "float32"]),
    ([np.zeros((48, 64, 2), np.uint8)], ["frame 0", "(48, 64, 2)"]),
    (_frames(1)[0], ["list of frames", "(48, 64, 3)"]),
    ([1, 2, 3], ["frame 0", "int"]),
    (42, ["int"]),
])
def test_api_refuses_what_it_cannot_segment(toy_segmenter, frames, words):
    with pytest.raises(ValueError) as err:
        list(toy_segmenter.segment(frames))
    assert all(w in str(err.value) for w in words), str(err.value)


# ---- loader workers of a killed trainer ----

def _descendants(pid: int) -> set[int]:
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as f:
                    ppid = int(f.read().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(ppid, []).append(int(entry))
    found, todo = set(), [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.add(child)
            todo.append(child)
    return found


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


@pytest.mark.skipif(not os.path.isdir("/proc"), reason="needs /proc to list a process tree")
def test_loader_workers_end_when_the_trainer_is_killed(toy_root, tmp_path):
    proc = subprocess.Popen([sys.executable, "train.py", "--preset", "toy", "--opts", "DIR_DATA", toy_root,
                             "DIR_ROOT", str(tmp_path), "DATA_WORKERS", "2", "TRAIN_TOTAL_STEPS", "100000",
                             "TRAIN_LOG_STEP", "1"], cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    summary = tmp_path / "log" / "toy" / "summary.json"
    try:
        deadline = time.time() + 240
        while time.time() < deadline:  # until the first step has run: workers are up
            if summary.exists() and json.loads(summary.read_text() or "{}").get("history"):
                break
            time.sleep(0.2)
        run_processes = _descendants(proc.pid)
        assert len(run_processes) >= 2, "the run started no loader workers"
        proc.kill()
        proc.wait()
        deadline = time.time() + 20
        while time.time() < deadline and any(_alive(p) for p in run_processes):
            time.sleep(0.2)
        assert not [p for p in run_processes if _alive(p)]
    finally:
        for pid in _descendants(proc.pid) | {proc.pid}:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass


# ---- errors at start-up: one line, nothing half-written ----

def test_an_unusable_run_folder_is_one_line_and_leaves_no_lock(toy_root, tmp_path):
    (tmp_path / "log").write_text("a file where the log folder should be")
    out = run("train.py", "--preset", "toy", "--opts", "DIR_DATA", toy_root, "DIR_ROOT", str(tmp_path))
    assert "log" in one_error_line(out)
    assert sorted(os.listdir(tmp_path)) == ["log"]


def _config_error(*, exp_name=None, opts=()) -> str:
    args = argparse.Namespace(preset="toy", exp_name=exp_name, opts=list(opts), print_config=False)
    with pytest.raises(ConfigError) as err:
        load_config(args)
    return config_error_lines(err.value)


@pytest.mark.parametrize("opts, key", [
    (["PRETRAIN_PARTIAL_ENCODER", "bogus"], "PRETRAIN_PARTIAL_ENCODER"),
    (["TRAIN_LR", "inf"], "TRAIN_LR"),
    (["TRAIN_LR", "1e999"], "TRAIN_LR"),
    (["TEST_DATASET_SPLIT", "../val"], "TEST_DATASET_SPLIT"),
])
def test_settings_rules(opts, key):
    line = _config_error(opts=opts)
    assert line.startswith(f"config error: {key}") and "\n" not in line


@pytest.mark.parametrize("name", ["..", ".", "a/b"])
def test_exp_name_is_a_plain_name(name):
    line = _config_error(exp_name=name)
    assert line.startswith("config error: EXP_NAME") and "\n" not in line


@pytest.mark.parametrize("key, value", [("DEVICE", 0), ("TRAIN_LR", "fast"), ("DATA_WORKERS", 1.5),
                                        ("TRAIN_TBLOG", "yes"), ("DIR_DATA", 3)])
def test_values_edited_into_config_py_are_checked_by_key(key, value):
    from config import ConfigError
    cfg = Config()
    setattr(cfg, key, value)  # as if edited into config.py's defaults
    with pytest.raises(ConfigError) as err:
        cfg.validate()
    assert str(err.value).startswith(key) and "\n" not in str(err.value)


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message on a machine without a GPU")
def test_cuda_without_a_gpu_is_a_config_error():
    assert _config_error(opts=["DEVICE", "cuda"]).startswith("config error: DEVICE")


def test_broken_youtubevos_layouts_are_one_line(toy_root, tmp_path):
    ytb = tmp_path / "data" / "YTB" / "train"
    shutil.copytree(os.path.join(toy_root, "YTB", "train"), ytb)
    shutil.copytree(os.path.join(toy_root, "DAVIS"), tmp_path / "data" / "DAVIS")
    cfg = Config()
    cfg.apply_preset("toy")
    cfg.apply_opts(["DIR_DATA", str(tmp_path / "data"), "DIR_ROOT", str(tmp_path), "TRAIN_TOTAL_STEPS", "1",
                    "TRAIN_WARM_UP_STEPS", "0", "DATA_WORKERS", "0"])
    meta = json.loads((ytb / "meta.json").read_text())
    for broken in ({"no_videos": 1}, {"videos": []}, {"videos": {"v": {"objects": []}}}, "{not json"):
        (ytb / "meta.json").write_text(broken if isinstance(broken, str) else json.dumps(broken))
        assert train(cfg, CPU) == 1
        error = json.loads((tmp_path / "log" / "toy" / "summary.json").read_text())["error"]
        assert "meta.json" in error and "\n" not in error
    # Without meta.json the videos are listed from Annotations/, where a stray file is not a video.
    os.remove(ytb / "meta.json")
    (ytb / "Annotations" / "stray.txt").write_text("not a video")
    with pytest.warns(UserWarning, match="meta.json not found"):
        assert [v.name for v in youtubevos_videos(str(ytb))] == sorted(meta["videos"])


def test_empty_davis_split_is_one_line(davis_copy):
    (davis_copy / "ImageSets" / "2016" / "val.txt").write_text("\n")
    with pytest.raises(DataError, match="lists no sequences"):
        BENCHMARKS["davis2016"].read(str(davis_copy), DatasetOptions())


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


def test_resume_with_gradients_of_unknown_parameters_is_one_line(toy_root, tmp_path):
    cfg = Config()
    cfg.apply_preset("toy")
    cfg.apply_opts(["DIR_DATA", toy_root, "DIR_ROOT", str(tmp_path), "TRAIN_TOTAL_STEPS", "2", "DATA_WORKERS", "0",
                    "TRAIN_WARM_UP_STEPS", "0", "DATA_RANDOMCROP", "(65, 65)", "DATA_SHORT_EDGE_LEN", "70"])
    assert train(cfg, CPU, stop_step=0) == 3
    path = os.path.join(cfg.DIR_CKPT, "save_step_0.pth")
    # A file whose saved encoder gradients name a parameter the model lacks.
    content = {**read_training(path).content, "accumulated_grads": {"feature_extractor.not_a_layer.weight":
                                                                    torch.zeros(3)}}
    save_checkpoint(content, path)
    assert train(cfg, CPU) == 1
    error = json.loads((tmp_path / "log" / "toy" / "summary.json").read_text())["error"]
    assert "not_a_layer" in error and "save_step_0.pth" in error and "\n" not in error


def test_a_toy_checkpoint_evaluates_without_a_preset(toy_root, tmp_path):
    # The checkpoint records its architecture, window and data: `eval.py --ckpt_path X` is enough.
    cfg = _toy_cfg("resnet18")
    cfg.apply_opts(["DIR_DATA", toy_root, "MODEL_MAX_MEM", "4"])
    torch.manual_seed(2)
    model = LSTA.from_config(cfg)
    path = str(tmp_path / "save_step_300.pth")
    save_lsta(path, model, step=300, config=cfg.to_dict())
    # (TEST_BACKEND torch spares the test an ONNX export; the checkpoint alone picks the model and data.)
    out = run("eval.py", "--ckpt_path", path, "--out", str(tmp_path / "res"), "--opts", "TEST_BACKEND", "torch")
    assert out.returncode == 0, out.stderr[-3000:]
    record = json.loads((tmp_path / "res" / RECORD).read_text())
    assert record["model"]["backbone"] == "resnet18" and record["settings"]["DIR_DATA"] == toy_root
    assert record["settings"]["MODEL_MAX_MEM"] == 4
