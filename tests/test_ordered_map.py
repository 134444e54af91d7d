"""ordered_map: the frame reader's thread pool keeps the stream's order, its bound and its failures' places."""
import threading

import pytest

from utils.ordered_map import ordered_map


def test_results_in_order_whatever_finishes_first():
    release = threading.Event()

    def slow_first(i):
        if i == 0:  # item 0 finishes last: the others must still wait for it
            release.wait(timeout=10)
        elif i == 3:
            release.set()
        return i * i

    assert list(ordered_map(slow_first, range(10), workers=4, ahead=4)) == [i * i for i in range(10)]


def test_at_most_ahead_items_are_taken_from_the_source():
    taken = []

    def source():
        for i in range(100):
            taken.append(i)
            yield i

    results = ordered_map(lambda i: i, source(), workers=2, ahead=3)
    assert next(results) == 0
    assert len(taken) == 4  # the one yielded and three ahead
    results.close()


def test_a_failing_source_fails_after_the_items_before_it():
    def source():
        yield from range(5)
        raise OSError("the video stopped decoding")

    seen = []
    with pytest.raises(OSError, match="stopped decoding"):
        for value in ordered_map(lambda i: i + 100, source(), workers=2, ahead=8):
            seen.append(value)
    assert seen == [100, 101, 102, 103, 104]


def test_a_failing_item_fails_in_its_turn():
    def fn(i):
        if i == 2:
            raise ValueError("item 2 is bad")
        return i

    seen = []
    with pytest.raises(ValueError, match="item 2"):
        for value in ordered_map(fn, range(6), workers=3, ahead=4):
            seen.append(value)
    assert seen == [0, 1]
