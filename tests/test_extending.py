"""A new metric kind and a new inference backend are one class and one registry line (docs/extending.md)."""
from __future__ import annotations

import dataclasses
import os
import shutil

import numpy as np
import pytest
import torch

from config import ConfigError
from evaluation.benchmarks import BENCHMARKS, DatasetOptions, score
from evaluation.evaluators import EVALUATORS, Evaluator, EvaluatorResult
from evaluation.evaluators.region import scored_pairs
from evaluation.metrics import read_pair
from inference.backends import BACKENDS
from inference.backends.base import Backend
from inference.options import InferenceOptions
from inference.segmenter import VideoSegmenter
from networks.lsta import LSTA
from tests.helpers.builders import preset_config
from utils.image_io import write_palette_png


class PrecisionEvaluator(Evaluator):
    """docs/extending.md's example: the share of predicted foreground that is foreground in the ground truth."""

    def reset(self):
        self.per_sequence = []

    def process(self, sequence):
        pairs = [read_pair(gt, mask) for gt, mask in scored_pairs(self.context, sequence)]
        self.per_sequence.append(np.mean([(g & p).sum() / max(p.sum(), 1) for g, p in pairs]))

    def evaluate(self):
        return EvaluatorResult({"Precision": float(np.mean(self.per_sequence))})


def test_a_new_metric_is_one_class_and_one_registry_line(toy_root, tmp_path, monkeypatch):
    monkeypatch.setitem(EVALUATORS, "precision", PrecisionEvaluator)  # the registry line
    bench = dataclasses.replace(BENCHMARKS["davis2016"], evaluator="precision")  # a benchmark entry naming it
    davis = os.path.join(toy_root, "DAVIS")
    sequences = bench.read(davis, DatasetOptions("val", False))
    results = tmp_path / "results"
    for seq in sequences:  # the ground truth as the prediction, then one frame's mask emptied
        shutil.copytree(os.path.join(davis, "Annotations", "480p", seq.name), results / seq.name)
    perfect = score(bench, sequences, str(results), "val").headline["Precision"]
    assert perfect == pytest.approx(1.0)
    first = sequences[0]
    wrong = np.ones((120, 216), np.uint8)  # everything foreground: precision falls
    for name in first.frame_names:
        write_palette_png(str(results / first.name / f"{name}.png"), wrong)
    assert score(bench, sequences, str(results), "val").headline["Precision"] < perfect


class HalfPrecisionHeadBackend(Backend):
    """A backend written for the test: the model's encoder as is, its head through float16 and back."""
    name = "half_head"

    def encode(self, images):
        return self.model.encode(images)

    def head(self, ltm_out, sta_out):
        return self.model.head(ltm_out.half().float(), sta_out.half().float())


def test_a_new_backend_is_one_class_and_one_registry_line(toy_root, monkeypatch):
    monkeypatch.setitem(BACKENDS, "half_head", HalfPrecisionHeadBackend)  # the registry line
    cfg = preset_config("toy", ["TEST_BACKEND", "half_head", "MODEL_MAX_MEM", "4"])  # allowed: the rule reads BACKENDS
    cfg.validate()
    torch.manual_seed(0)
    model = LSTA.from_config(cfg).eval()
    frames_dir = os.path.join(toy_root, "DAVIS", "JPEGImages", "480p", "toy-val-00")
    frames = [os.path.join(frames_dir, n) for n in sorted(os.listdir(frames_dir))]
    mine = VideoSegmenter.from_config(model, cfg)
    assert isinstance(mine.backend, HalfPrecisionHeadBackend)
    plain = VideoSegmenter(model, InferenceOptions(window=4, backend="torch"))
    for a, b in zip(mine.segment(frames), plain.segment(frames)):
        assert np.abs(a.probability - b.probability).max() < 1e-2
    with pytest.raises(ConfigError, match="TEST_BACKEND"):
        preset_config("toy", ["TEST_BACKEND", "no_such_backend"]).validate()
