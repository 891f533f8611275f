"""The read stage: a thread pool reads inputs ahead of the decode stage, bounded in bytes.

A count alone does not bound host memory: a PNG or any PIL-decoded input waits as decoded
pixels (36 MB for a 12-megapixel photo), so three batches of 1,024 could hold 100 GB. Here
reads are submitted only while fewer than `workers` run and the finished, unconsumed ones
hold less than `max_bytes`; each batch handed on stops at `max_bytes` too.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

from clip_multimodal.gpu.decode import Loaded

__all__ = ["ReadAhead"]


class ReadAhead:
    """Inputs read in order by `pool`, at most `max_items` ahead and about `max_bytes` held.

    Held: the finished reads not yet taken, plus at most `workers` reads in flight.
    """

    def __init__(
        self,
        pool: ThreadPoolExecutor,
        read: Callable[[Any], Loaded],
        sources: Sequence[Any],
        *,
        max_items: int,
        max_bytes: int,
        workers: int,
    ) -> None:
        self._pool, self._read, self._sources = pool, read, sources
        self._max_items, self._max_bytes, self._workers = max_items, max_bytes, workers
        self._lock = threading.RLock()  # a callback may run at once, in the submitting thread
        self._pending: deque[tuple[int, Future[Loaded]]] = deque()
        self._queued = self._running = self._held = 0
        self._closed = False
        self._top_up()

    @property
    def held_bytes(self) -> int:
        """Host bytes in finished reads not yet taken."""
        return self._held

    def _top_up(self) -> None:
        with self._lock:
            while (
                not self._closed
                and self._queued < len(self._sources)
                and len(self._pending) < self._max_items
                and self._running < self._workers
                and self._held < self._max_bytes
            ):
                self._running += 1
                future = self._pool.submit(self._read, self._sources[self._queued])
                self._pending.append((self._queued, future))
                self._queued += 1
                future.add_done_callback(self._finished)

    def _finished(self, future: Future[Loaded]) -> None:
        with self._lock:
            self._running -= 1
            if not future.cancelled() and future.exception() is None:
                self._held += future.result().host_bytes
        self._top_up()

    def take(self, count: int) -> list[tuple[int, Loaded]]:
        """The next inputs in order: up to `count`, fewer once they hold `max_bytes`.

        Empty when every input was taken. A reader's exception re-raises here.
        """
        batch: list[tuple[int, Loaded]] = []
        taken = 0
        while len(batch) < count and taken < self._max_bytes:
            with self._lock:
                if not self._pending:
                    break
                position, future = self._pending[0]
            loaded = future.result()  # waits outside the lock: the callbacks need it
            with self._lock:
                self._pending.popleft()
                self._held -= loaded.host_bytes
            self._top_up()
            batch.append((position, loaded))
            taken += loaded.host_bytes
        return batch

    def close(self) -> None:
        """Submit nothing more (the pool is about to shut down)."""
        with self._lock:
            self._closed = True
