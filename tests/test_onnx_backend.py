"""TEST_BACKEND onnxruntime: the encoder exported once per set of weights, masks equal to PyTorch's."""
import glob
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest
import torch

from config import Config
from inference.backends import resolve_backend
from inference.backends.onnx_export import (
    HEAD_FILE,
    export_model,
    network_code_digest,
    weights_digest,
)
from inference.backends.onnxruntime_backend import OnnxGraph, OnnxRuntimeBackend
from inference.segmenter import InferenceOptions, VideoSegmenter
from networks.lsta import LSTA
from networks.weights import load_lsta
from tests.conftest import fixture
from tests.helpers.builders import small_cfg
from utils.checkpoint import read_checkpoint
from utils.errors import SettingError

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture(scope="module")
def onnx_cache(tmp_path_factory, toy_weights):
    """A cache holding the toy weights' export, made by the export tool as a user would run it."""
    cache = str(tmp_path_factory.mktemp("onnx"))
    out = subprocess.run([sys.executable, "-m", "tools.export_onnx", "--ckpt_path", toy_weights, "--size", "65", "97",
                          "--preset", "toy", "--opts", "DIR_ONNX_CACHE", cache], cwd=ROOT, capture_output=True,
                         text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    return cache


def _segment(toy_root, toy_weights, backend, cache):
    cfg = Config()
    cfg.apply_preset("toy")
    frames = sorted(glob.glob(os.path.join(toy_root, "DAVIS", "JPEGImages", "480p", "toy-val-00", "*.jpg")))
    model, _ = load_lsta(toy_weights, cfg)
    segmenter = VideoSegmenter(model, InferenceOptions(window=5, backend=backend, onnx_cache=cache))
    return segmenter, [(f.mask, f.probability) for f in segmenter.segment(frames)]


def test_onnxruntime_masks_equal_torch(toy_root, toy_weights, onnx_cache):
    exports = os.listdir(onnx_cache)
    torch_run, reference = _segment(toy_root, toy_weights, "torch", onnx_cache)
    onnx_run, results = _segment(toy_root, toy_weights, "onnxruntime", onnx_cache)
    assert (torch_run.backend.name, onnx_run.backend.name) == ("torch", "onnxruntime")
    assert os.listdir(onnx_cache) == exports  # the tool's export was found, not made again
    assert len(results) == len(reference) > 5
    # Same graph, another kernel library: float32 rounding only (measured: max 3e-7 here).
    assert max(float(np.abs(a[1] - b[1]).max()) for a, b in zip(reference, results)) < 1e-4
    assert np.mean([np.mean(a[0] == b[0]) for a, b in zip(reference, results)]) >= 0.9999


def test_export_is_keyed_by_weights_and_accepts_any_frame_size(toy_weights, onnx_cache):
    cfg = Config()
    cfg.apply_preset("toy")
    model, _ = load_lsta(toy_weights, cfg)
    model.eval()
    digest = weights_digest(model)
    onnx = OnnxRuntimeBackend(model, InferenceOptions(onnx_cache=onnx_cache), torch.device("cpu"))
    assert onnx.folder == os.path.join(onnx_cache, digest[:24])  # the tool's export, found by its key
    for batch, height, width in ((1, 33, 33), (2, 113, 209)):  # sizes the export never saw
        images = torch.randn(batch, 3, height, width)
        with torch.inference_mode():
            features = model.encode(images)
            caches = model.cache_frames(features).split()
            reference = model.segment_cached(caches[0], caches[-1:], caches[-1])
            logits = model.segment_cached(caches[0], caches[-1:], caches[-1], onnx.head)
        for got, want in ((onnx.encode(images), features), (logits, reference)):
            assert got.shape == want.shape
            assert float((got - want).abs().max()) <= 1e-4 * float(want.abs().max())
    with torch.no_grad():
        model.pred.bias[0] += 1.0
    assert weights_digest(model) != digest  # other weights, another export


def test_export_is_keyed_by_the_network_code(tmp_path):
    # A change to how the model computes (same weights) must not reuse an export of the old code.
    networks = tmp_path / "networks"
    shutil.copytree(os.path.join(ROOT, "networks"), networks, ignore=shutil.ignore_patterns("__pycache__"))
    before = network_code_digest(str(networks))
    assert before == network_code_digest()
    with open(networks / "decoder.py", "a") as source:
        source.write("\n# changed\n")
    assert network_code_digest(str(networks)) != before


def test_onnxruntime_head_reproduces_the_authors_logits(tmp_path):
    # The golden window (the authors' head weights and six frames' features) with the head in ONNX Runtime.
    golden = read_checkpoint(fixture("lsta_head_golden.pt"), "golden head outputs")
    model = LSTA.from_config(small_cfg()).eval()
    model.load_state_dict(golden["head_state_dict"], strict=False)
    os.makedirs(tmp_path / "export")
    export_model(model, str(tmp_path / "export"), parts=(HEAD_FILE,))
    head = OnnxGraph(str(tmp_path / "export" / HEAD_FILE))
    feats = golden["feats"]
    with torch.no_grad():
        caches = model.cache_frames(torch.cat(feats)).split()
        for i, expected in enumerate(golden["logits"]):
            others = caches[:i] + caches[i + 1:]
            logits = model.segment_cached(caches[i], others[:-1], others[-1], head)
            assert (logits - expected).abs().max() / expected.abs().max() <= 1e-4, i


def test_backend_choice():
    cpu, cuda = torch.device("cpu"), torch.device("cuda")
    assert resolve_backend("auto", cpu, "float32") == "onnxruntime"
    assert resolve_backend("auto", cpu, "bf16") == "torch"
    assert resolve_backend("auto", cuda, "float32") == "torch"
    assert resolve_backend("torch", cpu, "float32") == "torch"
    assert resolve_backend("auto", cpu, "float32", ("TEST_COMPILE",)) == "torch"
    with pytest.raises(SettingError, match="TEST_CHANNELS_LAST is a PyTorch option"):
        resolve_backend("onnxruntime", cpu, "float32", ("TEST_CHANNELS_LAST",))
    with pytest.raises(SettingError, match="TEST_BACKEND onnxruntime runs on the CPU"):
        resolve_backend("onnxruntime", cuda, "float32")
    with pytest.raises(SettingError, match="TEST_PRECISION bf16 needs torch"):
        resolve_backend("onnxruntime", cpu, "bf16")


def test_auto_falls_back_to_torch_where_the_export_cannot_be_written(toy_weights, tmp_path):
    cfg = Config()
    cfg.apply_preset("toy")
    model, _ = load_lsta(toy_weights, cfg)
    blocked = tmp_path / "not_a_folder"
    blocked.write_text("a file where the cache folder would go")
    segmenter = VideoSegmenter(model, InferenceOptions(window=5, backend="auto", onnx_cache=str(blocked / "onnx")))
    assert segmenter.backend.name == "torch"
    with pytest.raises(OSError):
        VideoSegmenter(model, InferenceOptions(window=5, backend="onnxruntime", onnx_cache=str(blocked / "onnx")))
