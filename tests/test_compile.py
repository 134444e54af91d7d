"""TEST_COMPILE: the encoder run through torch.compile gives the uncompiled encoder's masks."""
import glob
import os

import numpy as np
import torch._dynamo.utils

from config import Config
from inference.segmenter import InferenceOptions, VideoSegmenter
from networks.weights import load_lsta


def test_compiled_encoder_gives_the_uncompiled_masks(toy_root, toy_weights):
    cfg = Config()
    cfg.apply_preset("toy")
    frames = sorted(glob.glob(os.path.join(toy_root, "DAVIS", "JPEGImages", "480p", "toy-val-00", "*.jpg")))[:8]
    model, _ = load_lsta(toy_weights, cfg)
    plain = VideoSegmenter(model, InferenceOptions(window=5, backend="torch"), "cpu")
    reference = [(f.mask, f.probability) for f in plain.segment(frames)]
    cfg.set("MODEL_MAX_MEM", 5)
    cfg.set("TEST_BACKEND", "auto")  # auto means torch once TEST_COMPILE is on, on any device
    cfg.set("TEST_COMPILE", True)
    graphs = torch._dynamo.utils.counters["stats"]["unique_graphs"]
    compiled = VideoSegmenter.from_config(model, cfg, "cpu")
    results = [(f.mask, f.probability) for f in compiled.segment(frames)]
    assert compiled.backend == "torch"
    # Where Inductor cannot build (no C++ compiler), the segmenter says why and runs the encoder as it is.
    assert compiled.encode.failure is not None or torch._dynamo.utils.counters["stats"]["unique_graphs"] > graphs
    assert len(results) == len(reference) == len(frames)
    for (mask, probability), (ref_mask, ref_probability) in zip(results, reference):
        assert np.abs(probability - ref_probability).max() <= 1e-4  # float32 reordered by the compiler
        assert np.mean(mask == ref_mask) >= 0.999
