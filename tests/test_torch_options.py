"""PyTorch-only ways of running the model (TEST_COMPILE, TEST_CHANNELS_LAST) give its plain results."""
import glob
import os

import numpy as np
import pytest
import torch._dynamo.utils

from config import Config, ConfigError
from inference.segmenter import InferenceOptions, VideoSegmenter
from networks.lsta import LSTA
from networks.weights import load_lsta
from utils.errors import SettingError


@pytest.mark.parametrize("key", ["TEST_COMPILE", "TEST_CHANNELS_LAST"])
def test_pytorch_option_gives_the_plain_results(toy_root, toy_weights, key):
    cfg = Config()
    cfg.apply_preset("toy")
    frames = sorted(glob.glob(os.path.join(toy_root, "DAVIS", "JPEGImages", "480p", "toy-val-00", "*.jpg")))[:8]
    model, _ = load_lsta(toy_weights, cfg)
    plain = VideoSegmenter(model, InferenceOptions(window=5, backend="torch"), "cpu")
    reference = [(f.mask, f.probability) for f in plain.segment(frames)]
    cfg.set("MODEL_MAX_MEM", 5)
    cfg.set("TEST_BACKEND", "auto")  # auto means torch once a PyTorch-only option is on, on any device
    cfg.set(key, True)
    graphs = torch._dynamo.utils.counters["stats"]["unique_graphs"]
    segmenter = VideoSegmenter.from_config(model, cfg, "cpu")
    results = [(f.mask, f.probability) for f in segmenter.segment(frames)]
    assert segmenter.backend.name == "torch"
    if key == "TEST_COMPILE":
        # Where Inductor cannot build (no C++ compiler), the segmenter says why and runs the model as it is.
        compiled = torch._dynamo.utils.counters["stats"]["unique_graphs"] - graphs
        assert compiled >= 2 or (segmenter.encode.failure and segmenter.step.failure)
    assert len(results) == len(reference) == len(frames)
    for (mask, probability), (ref_mask, ref_probability) in zip(results, reference):
        assert np.abs(probability - ref_probability).max() <= 1e-4  # float32, summed in another order
        assert np.mean(mask == ref_mask) >= 0.999


def test_cuda_graphs_need_a_gpu_and_say_so():
    cfg = Config()
    cfg.apply_preset("toy")
    cfg.set("TEST_COMPILE", "cudagraphs")  # a setting, accepted as such ...
    cfg.set("DEVICE", "cpu")
    with pytest.raises(ConfigError, match="TEST_COMPILE .*cudagraphs.* needs DEVICE cuda"):
        cfg.validate()  # ... that a CPU configuration refuses
    with pytest.raises(SettingError, match="TEST_COMPILE cudagraphs .* needs a GPU"):
        VideoSegmenter.from_config(LSTA.from_config(cfg), cfg, "cpu")  # and so does the segmenter, given a CPU
    cfg.set("TEST_COMPILE", "always")
    with pytest.raises(ConfigError, match="TEST_COMPILE"):
        cfg.validate()
