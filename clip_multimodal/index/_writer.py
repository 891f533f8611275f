"""One background writer, so that embedding the next chunk overlaps writing the last one.

The overlap is real against a Chroma server (the write is socket I/O). Embedded Chroma 1.5.9
holds the GIL for the whole of each `add` (a Python thread made 1 step of progress during a
4.8 s add of 3,000 vectors), so in-process writes and embedding take turns; merging queued
chunks into fewer, larger writes is then what saves time.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable
from types import TracebackType
from typing import Generic, TypeVar

__all__ = ["BackgroundWriter"]

T = TypeVar("T")
_STOP = object()


class BackgroundWriter(Generic[T]):
    """Runs `write(item)` for each `put` item, in order, on one thread.

    The queue is bounded (`depth`), so a producer faster than the store waits instead of
    piling chunks up in memory. When items wait in the queue (the store is the bottleneck),
    `merge` folds them into one write: the store ingests large batches faster than small
    ones. The first write error stops the writer and is raised from the next `put` or on
    leaving the `with` block, which waits for every queued write.
    """

    def __init__(
        self,
        write: Callable[[T], None],
        merge: Callable[[T, T], T] | None = None,
        depth: int = 8,
    ) -> None:
        self._write = write
        self._merge = merge
        self._queue: queue.Queue[object] = queue.Queue(maxsize=depth)
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="clip-index-writer", daemon=True)
        self._thread.start()

    def put(self, item: T) -> None:
        self._raise_if_failed()
        self._queue.put(item)

    def __enter__(self) -> BackgroundWriter[T]:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        # On the producer's own error, still finish what was queued: those chunks are
        # complete records, and writing them leaves less work for the re-run.
        self._queue.put(_STOP)
        self._thread.join()
        if exc is None:
            self._raise_if_failed()

    def _run(self) -> None:
        stop = False
        while not stop:
            item = self._queue.get()
            if item is _STOP:
                return
            item, stop = self._drain_into(item)
            if self._error is None:  # after a failure, drain without writing
                try:
                    self._write(item)  # type: ignore[arg-type]
                except BaseException as exc:
                    self._error = exc

    def _drain_into(self, item: object) -> tuple[object, bool]:
        """Merge whatever is already queued into `item`; report whether STOP was among it."""
        if self._merge is None:
            return item, False
        while True:
            try:
                nxt = self._queue.get_nowait()
            except queue.Empty:
                return item, False
            if nxt is _STOP:
                return item, True
            item = self._merge(item, nxt)  # type: ignore[arg-type]

    def _raise_if_failed(self) -> None:
        if self._error is not None:
            raise self._error
