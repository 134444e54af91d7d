"""The onnxruntime export cache cannot lie: every kind of bad entry is found at use and rebuilt, never scored."""
import csv
import logging
import os
import shutil

import numpy as np
import pytest
import torch

from inference.backends.onnx_export import (
    ENCODER_FILE,
    GRAPH_FILES,
    HEAD_FILE,
    weights_digest,
)
from inference.backends.onnxruntime_backend import OnnxRuntimeBackend
from inference.options import InferenceOptions
from inference.segmenter import VideoSegmenter
from networks.weights import load_lsta
from tests.helpers.builders import preset_config
from tests.helpers.runs import run_script
from utils.errors import UserError
from utils.files import file_digest, write_json
from utils.verified_cache import (
    MANIFEST,
    CacheEntry,
    CacheWriteError,
    VerifiedCache,
    problem_with,
)

FILES = ("graph.bin", "graph.bin.data")


def _build(key: str):
    def build(folder):
        for index, name in enumerate(FILES):
            with open(os.path.join(folder, name), "wb") as f:
                f.write((key * 1000 + str(index)).encode())
    return build


def _flip_every_4096th_byte(path):
    data = bytearray(open(path, "rb").read())
    data[::4096] = bytes(b ^ 0xFF for b in data[::4096])
    open(path, "wb").write(bytes(data))


def _truncate(path, size):
    with open(path, "r+b") as f:
        f.truncate(size)


# (kind, how to spoil an entry built for key "a"): each must be found and rebuilt with one warning.
SPOILERS = {
    "manifest missing": lambda folder: os.remove(os.path.join(folder, MANIFEST)),
    "manifest not JSON": lambda folder: open(os.path.join(folder, MANIFEST), "w").write("{half"),
    "another key's entry": lambda folder: (shutil.rmtree(folder), os.makedirs(folder),
                                           _build("b")(folder), _manifest(folder, "b")),
    "file missing": lambda folder: os.remove(os.path.join(folder, FILES[1])),
    "file truncated": lambda folder: _truncate(os.path.join(folder, FILES[0]), 100),
    "bytes flipped": lambda folder: _flip_every_4096th_byte(os.path.join(folder, FILES[1])),
    "files without a build": lambda folder: (os.remove(os.path.join(folder, MANIFEST)),
                                             os.remove(os.path.join(folder, FILES[0]))),
}


def _manifest(folder, key):
    write_json(os.path.join(folder, MANIFEST), {"format": 1, "key": key, "files": {
        name: file_digest(os.path.join(folder, name)) for name in FILES}})


class _Records(logging.Handler):
    def __init__(self):
        super().__init__()
        self.records = []

    def emit(self, record):
        self.records.append(record)


@pytest.fixture()
def warnings_of():
    """The WARNING records of a logger (utils/logger.py turns propagation off, so caplog misses them)."""
    handler, loggers = _Records(), []

    def watch(name):
        logger = logging.getLogger(name)
        logger.addHandler(handler)
        loggers.append(logger)
        return lambda: [r for r in handler.records if r.levelno == logging.WARNING]
    yield watch
    for logger in loggers:
        logger.removeHandler(handler)


@pytest.mark.parametrize("kind", sorted(SPOILERS))
def test_a_bad_entry_is_rebuilt_with_one_warning(tmp_path, kind, warnings_of):
    log = logging.getLogger("tests.cache")
    warnings = warnings_of("tests.cache")
    cache, entry = VerifiedCache(str(tmp_path), log), CacheEntry("entry", "a", FILES, "the test entry")
    folder = cache.get(entry, _build("a"))
    assert problem_with(folder, entry) is None and warnings() == []
    SPOILERS[kind](folder)
    assert problem_with(folder, entry) is not None
    assert cache.get(entry, _build("a")) == folder
    assert problem_with(folder, entry) is None
    assert open(os.path.join(folder, FILES[0]), "rb").read() == ("a" * 1000 + "0").encode()
    assert len(warnings()) == 1


def test_an_entry_holding_other_files_is_set_aside_not_deleted(tmp_path):
    cache, entry = VerifiedCache(str(tmp_path), logging.getLogger("tests.cache")), CacheEntry("e", "a", FILES, "x")
    folder = cache.get(entry, _build("a"))
    open(os.path.join(folder, "notes.txt"), "w").write("mine")
    os.remove(os.path.join(folder, MANIFEST))
    cache.get(entry, _build("a"))
    aside = [n for n in os.listdir(tmp_path) if n.startswith("e.set-aside-")]
    assert len(aside) == 1 and open(tmp_path / aside[0] / "notes.txt").read() == "mine"


def test_a_cache_that_cannot_be_written_is_one_error(tmp_path):
    blocked = tmp_path / "not_a_folder"
    blocked.write_text("a file where the cache folder would go")
    cache, entry = VerifiedCache(str(blocked / "cache"), logging.getLogger("tests.cache")), CacheEntry("e", "a", FILES,
                                                                                                        "the entry")
    with pytest.raises(CacheWriteError) as caught:
        cache.get(entry, _build("a"))
    assert isinstance(caught.value, UserError) and "\n" not in str(caught.value) and "the entry" in str(caught.value)


# ---- the onnxruntime export itself ----

@pytest.fixture(scope="module")
def toy_model(toy_weights):
    model, _ = load_lsta(toy_weights, preset_config("toy"))
    return model.eval()


@pytest.fixture(scope="module")
def pristine_cache(tmp_path_factory, toy_model):
    """A cache holding the toy weights' export."""
    cache = str(tmp_path_factory.mktemp("onnx"))
    OnnxRuntimeBackend(toy_model, InferenceOptions(onnx_cache=cache), torch.device("cpu"))
    return cache


def _other_weights(model):
    other = type(model)(model.args)
    other.load_state_dict(model.state_dict())
    with torch.no_grad():
        other.pred.bias[0] += 1.0
    return other


# The reported cases: each leaves an entry that must not be used as it is.
EXPORT_SPOILERS = {
    "encoder.onnx.data: every 4096th byte flipped":
        lambda f: _flip_every_4096th_byte(os.path.join(f, ENCODER_FILE + ".data")),
    "encoder.onnx cut to 3000 bytes": lambda f: _truncate(os.path.join(f, ENCODER_FILE), 3000),
    "encoder.onnx.data cut to 1 MB": lambda f: _truncate(os.path.join(f, ENCODER_FILE + ".data"), 2 ** 20),
    "head.onnx cut to 500 bytes": lambda f: _truncate(os.path.join(f, HEAD_FILE), 500),
    "manifest removed": lambda f: os.remove(os.path.join(f, MANIFEST)),
}


@pytest.mark.parametrize("kind", sorted(EXPORT_SPOILERS))
def test_every_damage_to_an_export_is_found(pristine_cache, toy_model, tmp_path, kind):
    key = weights_digest(toy_model)
    folder = str(tmp_path / key[:24])
    shutil.copytree(os.path.join(pristine_cache, key[:24]), folder)
    entry = CacheEntry(key[:24], key, GRAPH_FILES, "export")
    assert problem_with(folder, entry) is None
    EXPORT_SPOILERS[kind](folder)
    assert problem_with(folder, entry) is not None


def test_another_checkpoints_export_is_not_taken_for_this_ones(pristine_cache, toy_model, tmp_path):
    # The export of one set of weights copied, manifest and all, into the folder of another's.
    key, other = weights_digest(toy_model), weights_digest(_other_weights(toy_model))
    assert key != other
    shutil.copytree(os.path.join(pristine_cache, key[:24]), tmp_path / other[:24])
    reason = problem_with(str(tmp_path / other[:24]), CacheEntry(other[:24], other, GRAPH_FILES, "export"))
    assert reason is not None and "another key" in reason


def test_a_damaged_export_is_rebuilt_and_segments_as_torch(pristine_cache, toy_model, toy_root, tmp_path, warnings_of):
    warnings = warnings_of("lsta.inference")
    key = weights_digest(toy_model)
    shutil.copytree(os.path.join(pristine_cache, key[:24]), tmp_path / key[:24])
    _flip_every_4096th_byte(str(tmp_path / key[:24] / (ENCODER_FILE + ".data")))
    frames = sorted(os.path.join(toy_root, "DAVIS/JPEGImages/480p/toy-val-00", n)
                    for n in os.listdir(os.path.join(toy_root, "DAVIS/JPEGImages/480p/toy-val-00")))
    rebuilt = VideoSegmenter(toy_model, InferenceOptions(window=5, backend="onnxruntime", onnx_cache=str(tmp_path)))
    assert len(warnings()) == 1
    reference = VideoSegmenter(toy_model, InferenceOptions(window=5, backend="torch"))
    pairs = list(zip(reference.segment(frames), rebuilt.segment(frames)))
    assert len(pairs) == len(frames)
    assert np.mean([np.mean(a.mask == b.mask) for a, b in pairs]) >= 0.9999


def test_eval_with_a_flipped_export_scores_what_torch_scores(pristine_cache, toy_weights, toy_model, toy_root,
                                                             tmp_path):
    key = weights_digest(toy_model)
    shutil.copytree(os.path.join(pristine_cache, key[:24]), tmp_path / "cache" / key[:24])
    _flip_every_4096th_byte(str(tmp_path / "cache" / key[:24] / (ENCODER_FILE + ".data")))
    figures = {}
    for backend in ("onnxruntime", "torch"):
        out = run_script("eval.py", "--ckpt_path", toy_weights, "--out", str(tmp_path / backend), "--opts",
                         "DIR_DATA", toy_root, "TEST_BACKEND", backend, "DIR_ONNX_CACHE", str(tmp_path / "cache"))
        assert out.returncode == 0, out.stderr[-2000:]
        with open(tmp_path / backend / "global_results-val.csv") as f:
            figures[backend] = float(next(csv.DictReader(f))["J&F-Mean"])
    assert figures["onnxruntime"] == pytest.approx(figures["torch"], abs=1e-3)
    assert figures["torch"] > 0.0
