"""A bounded worker pool with a bounded queue, for blocking work off the event loop.

``workers`` threads run jobs; up to ``queue`` more may wait. A job beyond that is refused
at once (:class:`PoolFull`, the service answers 429) rather than queued without bound.
A job that takes longer than its timeout is abandoned by its caller (503), but keeps its
place until its thread finishes, so the pool never runs more than ``workers`` jobs nor
holds more than ``workers + queue``.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

T = TypeVar("T")


class PoolFull(Exception):
    """Every worker is busy and the queue is full."""


class PoolTimeout(Exception):
    """The job did not finish within its timeout."""


class WorkerPool:
    def __init__(self, workers: int, queue: int) -> None:
        self.workers = workers
        self.capacity = workers + queue
        self._executor = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="atrous-serve")
        self._lock = threading.Lock()
        self._held = 0

    @property
    def held(self) -> int:
        """Jobs running or waiting."""
        return self._held

    def _release(self, _future: object = None) -> None:
        with self._lock:
            self._held -= 1

    async def run(self, fn: Callable[..., T], *args: object, timeout: float) -> T:
        """Run ``fn(*args)`` on a worker thread and await it.

        Raises:
            PoolFull: no place left (nothing was started).
            PoolTimeout: not done within ``timeout`` seconds, waiting included.
        """
        with self._lock:
            if self._held >= self.capacity:
                raise PoolFull
            self._held += 1
        try:
            future = self._executor.submit(fn, *args)
        except BaseException:
            self._release()
            raise
        future.add_done_callback(self._release)
        try:
            return await asyncio.wait_for(asyncio.shield(asyncio.wrap_future(future)), timeout)
        except asyncio.TimeoutError as exc:
            future.cancel()  # a job still waiting never runs; a running one finishes and frees its place
            raise PoolTimeout from exc

    def shutdown(self) -> None:
        self._executor.shutdown(wait=True, cancel_futures=True)
