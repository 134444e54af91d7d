"""`fn` over a stream on worker threads, results in the stream's order, a bounded number ahead."""
from __future__ import annotations

from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Callable, Iterable, Iterator, TypeVar

Item = TypeVar("Item")
Result = TypeVar("Result")


def ordered_map(fn: Callable[[Item], Result], items: Iterable[Item], workers: int, ahead: int) -> Iterator[Result]:
    """`fn(item)` for each item, computed by `workers` threads at most `ahead` items ahead, yielded in order.

    A failure of `fn` is raised when its item's turn comes. A failure of `items` itself (a video
    that stops decoding) is raised after the results of the items before it, as a plain loop would.
    """
    source = iter(items)
    pool = ThreadPoolExecutor(workers)
    queue: deque[Future] = deque()
    failure: Exception | None = None
    try:
        while True:
            try:
                item = next(source)
            except StopIteration:
                break
            except Exception as err:  # delivered after what came before it
                failure = err
                break
            queue.append(pool.submit(fn, item))
            if len(queue) > ahead:
                yield queue.popleft().result()
        while queue:
            yield queue.popleft().result()
        if failure is not None:
            raise failure
    finally:  # a consumer that stops early leaves no work running
        pool.shutdown(wait=True, cancel_futures=True)
