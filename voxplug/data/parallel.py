"""Run a function over a lazy stream of items on a few threads, keeping the order and a bounded memory.

Decoding (libsndfile), resampling (soxr) and hashing release the GIL, so threads give a near-linear speed-up on
audio work without the start-up cost and pickling of processes.
"""

from __future__ import annotations

import os
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from typing import TypeVar

In = TypeVar("In")
Out = TypeVar("Out")


def default_workers() -> int:
    """Threads to use for audio work: the CPUs this process may run on, at most 8."""
    try:
        available = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        available = os.cpu_count() or 1
    return max(1, min(8, available))


def map_ordered(
    function: Callable[[In], Out], items: Iterable[In], *, workers: int | None = None, window: int | None = None
) -> Iterator[tuple[In, Out | BaseException]]:
    """Yield ``(item, function(item))`` in the order of ``items``; an exception is yielded instead of raised.

    At most ``window`` items (default four per worker) are in flight, so an endless or huge iterable is consumed
    lazily. With one worker everything runs in the calling thread.
    """
    workers = workers or default_workers()
    if workers == 1:
        for item in items:
            yield item, _call(function, item)
        return
    window = window or 4 * workers
    pending: deque[tuple[In, Future[Out]]] = deque()
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="voxplug-audio") as pool:
        for item in items:
            pending.append((item, pool.submit(function, item)))
            if len(pending) >= window:
                done_item, future = pending.popleft()
                yield done_item, _outcome(future)
        while pending:
            done_item, future = pending.popleft()
            yield done_item, _outcome(future)


def _call(function: Callable[[In], Out], item: In) -> Out | BaseException:
    try:
        return function(item)
    except Exception as exc:  # handed to the caller, which reports it against the item
        return exc


def _outcome(future: Future[Out]) -> Out | BaseException:
    """The future's result, or the ``Exception`` it raised (anything else is raised here).

    The pool's own exception path is used on purpose: an exception caught inside the work item instead would hold
    the worker's frame, which holds the future, which holds the exception: one reference cycle per failed item,
    left to the cyclic collector, so a dataset with many bad rows would hold their memory until a full collection.
    """
    error = future.exception()
    if error is None:
        return future.result()
    if not isinstance(error, Exception):
        raise error
    return error
