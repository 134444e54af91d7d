"""The Python API's inputs: frames in memory are converted as documented, or refused with one error naming them."""
import numpy as np
import pytest

from config import Config
from inference.segmenter import VideoSegmenter


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
