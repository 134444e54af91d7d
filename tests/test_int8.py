"""TEST_PRECISION int8: ONNX Runtime's static quantization of the encoder, on every path, cached by weights and
calibration, and within the stated bound of float32 on a trained toy model."""
import json
import os

import numpy as np
import pytest
import torch

from config import Config
from evaluation.metrics import region_iou
from inference.backends import resolve_backend
from inference.demo_job import DemoJob
from inference.options import InferenceOptions
from inference.segmenter import VideoSegmenter
from networks.checkpoints import checkpoints_newest_first
from networks.weights import load_lsta
from tests.helpers.builders import CPU, preset_config
from tests.helpers.runs import one_error_line, run_script
from training.launch import train
from utils.errors import SettingError
from utils.image_io import read_binary_mask

MASK_AGREEMENT, J_DIFFERENCE = 0.995, 0.005  # the stated bound: ≥ 99.5 % of mask pixels, J within 0.5 (of 100)


@pytest.fixture(scope="module")
def trained_toy(toy_root, tmp_path_factory):
    """The toy model trained 100 steps on small crops (its masks find the objects), and its settings."""
    root = tmp_path_factory.mktemp("trained")
    cfg = preset_config("toy", DIR_DATA=toy_root, DIR_ROOT=str(root), TRAIN_TOTAL_STEPS=100, TRAIN_SAVE_STEP=100,
                        TRAIN_LOG_STEP=50, DATA_WORKERS=0, TRAIN_WARM_UP_STEPS=10, DATA_RANDOMCROP=(81, 81),
                        DATA_SHORT_EDGE_LEN=90)
    assert train(cfg, CPU) == 0
    return checkpoints_newest_first(cfg.DIR_CKPT)[0][1], cfg


def _sequence(toy_root, name):
    folder = os.path.join(toy_root, "DAVIS", "JPEGImages", "480p", name)
    frames = sorted(os.path.join(folder, n) for n in os.listdir(folder))
    truth = [read_binary_mask(f.replace("JPEGImages", "Annotations").replace(".jpg", ".png")) for f in frames]
    return frames, truth


def test_int8_stays_within_the_bound_of_float32_on_a_trained_model(trained_toy, toy_root, tmp_path):
    path, cfg = trained_toy
    model, _ = load_lsta(path, cfg)
    cache = str(tmp_path / "onnx")
    agreement, j_float, j_int8 = [], [], []
    for name in ("toy-val-00", "toy-val-01"):
        frames, truth = _sequence(toy_root, name)
        float32 = VideoSegmenter(model, InferenceOptions(window=5, backend="onnxruntime", onnx_cache=cache))
        int8 = VideoSegmenter(model, InferenceOptions(window=5, backend="onnxruntime", precision="int8",
                                                      onnx_cache=cache))
        a, b = [f.mask for f in float32.segment(frames)], [f.mask for f in int8.segment(frames)]
        assert np.mean([m.mean() for m in a]) > 0.02  # trained: it finds the objects, not just background
        agreement += [np.mean(x == y) for x, y in zip(a, b)]
        j_float.append(np.mean([region_iou(t, m) for t, m in zip(truth[1:-1], a[1:-1])]))
        j_int8.append(np.mean([region_iou(t, m) for t, m in zip(truth[1:-1], b[1:-1])]))
    assert np.mean(agreement) >= MASK_AGREEMENT
    assert abs(np.mean(j_int8) - np.mean(j_float)) <= J_DIFFERENCE


def test_the_int8_export_is_cached_by_weights_and_calibration(toy_weights, toy_root, tmp_path):
    model, _ = load_lsta(toy_weights, preset_config("toy"))
    cache = str(tmp_path / "onnx")
    frames, _ = _sequence(toy_root, "toy-val-00")

    def int8_folder(calibration_frames):
        segmenter = VideoSegmenter(model, InferenceOptions(window=5, backend="onnxruntime", precision="int8",
                                                           onnx_cache=cache))
        assert segmenter.backend.needs_calibration
        list(segmenter.segment(calibration_frames))  # calibrated on the first frames it segments
        return segmenter.backend.folder

    first = int8_folder(frames[:8])
    built = os.path.getmtime(os.path.join(first, "manifest.json"))
    assert int8_folder(frames[:8]) == first and os.path.getmtime(os.path.join(first, "manifest.json")) == built
    other = int8_folder(frames[4:12])  # other calibration frames: another export
    assert other != first and {first, other} <= {os.path.join(cache, n) for n in os.listdir(cache)}
    with torch.no_grad():
        model.pred.bias[0] += 1.0  # other weights: another float export, and another int8 one
    assert int8_folder(frames[:8]) not in (first, other)


def test_int8_through_eval_py_and_the_demo_records_its_precision(toy_weights, toy_root, tmp_path):
    settings = ("--opts", "DIR_DATA", toy_root, "MODEL_MAX_MEM", "4", "TEST_PRECISION", "int8", "DIR_ONNX_CACHE",
                str(tmp_path / "onnx"))
    built = run_script("-m", "tools.export_onnx", "--ckpt_path", toy_weights, "--size", "120", "216", "--dataset",
                       "davis2016", *settings)  # ahead of time, calibrated as eval.py will calibrate
    assert built.returncode == 0, built.stderr[-2000:]
    exports = sorted(os.listdir(tmp_path / "onnx"))
    assert len(exports) == 2 and sum(n.endswith("-int8") for n in exports) == 1  # the float export and the int8 one
    out = run_script("eval.py", "--ckpt_path", toy_weights, "--out", str(tmp_path / "res"), *settings)
    assert out.returncode == 0, out.stderr[-2000:]
    assert sorted(os.listdir(tmp_path / "onnx")) == exports  # eval.py found the tool's exports: none built
    float32 = run_script("-m", "tools.export_onnx", "--ckpt_path", toy_weights, "--dataset", "davis2016", "--opts",
                         "DIR_DATA", toy_root, "DIR_ONNX_CACHE", str(tmp_path / "onnx"))
    assert "--dataset" in one_error_line(float32)  # calibration frames chosen for no calibration: refused
    record = json.load(open(tmp_path / "res" / "eval.json"))
    assert record["backend"] == "onnxruntime" and "int8" in record["precision"]
    assert "int8" in open(tmp_path / "res" / "report" / "index.html").read()
    cfg = preset_config("toy", TEST_BACKEND="auto", TEST_PRECISION="int8", DIR_ONNX_CACHE=str(tmp_path / "onnx"))
    segmenter = VideoSegmenter.from_checkpoint(toy_weights, cfg)  # as demo.py builds it
    job = DemoJob(segmenter, os.path.join(toy_root, "videos", "clip.avi"), str(tmp_path / "jobs"), 320)
    job.start()
    final = list(job.updates())[-1]
    assert job.state == "done" and final.frames == 8 and segmenter.backend.folder.endswith("-int8")


def test_int8_calibration_from_a_folder(toy_weights, toy_root, tmp_path):
    model, _ = load_lsta(toy_weights, preset_config("toy"))
    folder = os.path.join(toy_root, "DAVIS", "JPEGImages", "480p", "toy-train-00")
    segmenter = VideoSegmenter(model, InferenceOptions(window=5, backend="onnxruntime", precision="int8",
                                                       onnx_cache=str(tmp_path / "onnx"), calibration=folder))
    assert not segmenter.backend.needs_calibration  # calibrated when built, on the folder's frames


def test_int8_runs_on_onnxruntime_only():
    cpu = torch.device("cpu")
    assert resolve_backend("auto", cpu, "int8") == "onnxruntime"
    with pytest.raises(SettingError, match="int8"):
        resolve_backend("torch", cpu, "int8")
    with pytest.raises(SettingError, match="on the CPU"):
        resolve_backend("onnxruntime", torch.device("cuda"), "int8")
    cfg = Config()
    cfg.set("TEST_PRECISION", "int8")
    cfg.validate()
