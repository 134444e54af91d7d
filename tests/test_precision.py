"""Inference precision options (TEST_PRECISION) on CPU: bf16 and fp16 autocast agree with float32."""
import glob
import os

import numpy as np
import pytest

from config import Config
from inference.segmenter import InferenceOptions, VideoSegmenter
from networks.weights import load_lsta


def _segment(toy_root, toy_weights, precision):
    cfg = Config()
    cfg.apply_preset("toy")
    frames = sorted(glob.glob(os.path.join(toy_root, "DAVIS", "JPEGImages", "480p", "toy-val-00", "*.jpg")))[:7]
    model, _ = load_lsta(toy_weights, cfg)
    segmenter = VideoSegmenter(model, InferenceOptions(window=5, precision=precision))
    return [(f.mask, f.probability) for f in segmenter.segment(frames)], frames


@pytest.fixture(scope="module")
def float32_results(toy_root, toy_weights):
    return _segment(toy_root, toy_weights, "float32")


@pytest.mark.parametrize("precision, min_agreement, max_probability_diff", [("bf16", 0.95, 0.1), ("fp16", 0.98, 0.02)])
def test_autocast_masks_agree_with_float32(toy_root, toy_weights, float32_results, precision, min_agreement,
                                           max_probability_diff):
    # A random-weight model sits near the decision boundary far more than a trained one, so these
    # bounds are loose; measured here: bf16 98.9 % of pixels, fp16 99.85 % (docs/evaluation.md).
    reference, frames = float32_results
    results, _ = _segment(toy_root, toy_weights, precision)
    pairs = list(zip(reference, results))
    assert len(pairs) == len(frames)
    assert np.mean([np.mean(a[0] == b[0]) for a, b in pairs]) >= min_agreement
    assert max(float(np.abs(a[1] - b[1]).max()) for a, b in pairs) <= max_probability_diff
    assert all(b[1].dtype == np.float32 for _, b in pairs)
