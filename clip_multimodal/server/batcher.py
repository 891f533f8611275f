"""A micro-batcher: concurrent requests share forward passes.

Each request hands its texts or images to `MicroBatcher` and gets a future. One worker thread
takes the first waiting job plus every job queued behind it (up to `max_batch` items) and runs
one encoder call per modality for all of them; each request's slice of the result goes back to
its own future. One thread owns the encoder, so requests never fight over it, and a batch of
32 texts costs far less than 32 passes of one.

Requests that arrive during a forward pass wait for it anyway, so they batch for free. The
short wait window is added only under load (the last batch had company): a lone client then
pays no extra latency, and a busy server still gathers the stragglers.
"""

from __future__ import annotations

import asyncio
import queue
import threading
import time
from collections.abc import Sequence
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np

from clip_multimodal.types import Encoder, ImageEmbeddings, ImageInput

__all__ = ["BatcherClosedError", "MicroBatcher"]

Kind = Literal["texts", "images"]


class BatcherClosedError(RuntimeError):
    """The batcher was closed; no new work is accepted."""


@dataclass
class _Job:
    kind: Kind
    items: list[Any]
    future: Future[Any] = field(default_factory=Future)


_STOP = object()


class MicroBatcher:
    """Merges concurrent embedding requests into shared encoder calls.

    Args:
        encoder: the model; only the worker thread calls it.
        max_batch: most items per encoder call (one request larger than this runs alone).
            `max_batch=1` gives one request per forward pass, the baseline batching beats.
        max_wait_s: how long the first job of a batch waits for company, when the previous
            batch merged several requests (an idle server answers a lone request at once).

    Example:
        >>> batcher = MicroBatcher(encoder, max_batch=32, max_wait_s=0.005)
        >>> vectors = await batcher.embed_texts(["a red circle"])
    """

    def __init__(self, encoder: Encoder, *, max_batch: int = 32, max_wait_s: float = 0.005) -> None:
        if max_batch < 1:
            raise ValueError(f"max_batch must be at least 1, got {max_batch}")
        if max_wait_s < 0:
            raise ValueError(f"max_wait_s must be >= 0, got {max_wait_s}")
        self.encoder = encoder
        self.max_batch = max_batch
        self.max_wait_s = max_wait_s
        self._queue: queue.Queue[Any] = queue.Queue()
        self._held: _Job | None = None  # a job that did not fit the last batch
        self._under_load = False  # the last batch merged several requests
        self._closed = False
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._run, name="clip-batcher", daemon=True)
        self._thread.start()

    # -- submitting ---------------------------------------------------------------------

    def submit_texts(self, texts: Sequence[str]) -> Future[np.ndarray]:
        """Queue texts; the future gives their embeddings, shape (len(texts), dim)."""
        return self._submit("texts", list(texts))

    def submit_images(self, images: Sequence[ImageInput]) -> Future[ImageEmbeddings]:
        """Queue images; the future gives an ImageEmbeddings whose indices and errors refer
        to positions in `images` (one bad image fails only itself)."""
        return self._submit("images", list(images))

    async def embed_texts(self, texts: Sequence[str]) -> np.ndarray:
        """Awaitable `submit_texts`; cancelling the await drops the job if not yet started."""
        return await asyncio.wrap_future(self.submit_texts(texts))

    async def embed_images(self, images: Sequence[ImageInput]) -> ImageEmbeddings:
        """Awaitable `submit_images`."""
        return await asyncio.wrap_future(self.submit_images(images))

    def _submit(self, kind: Kind, items: list[Any]) -> Future[Any]:
        job = _Job(kind, items)
        with self._lock:
            if self._closed:
                raise BatcherClosedError("the batcher is closed; create a new one")
            self._queue.put(job)
        return job.future

    def close(self, timeout: float | None = 5.0) -> None:
        """Finish the queued jobs, then stop the worker thread."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            self._queue.put(_STOP)
        self._thread.join(timeout)

    def __enter__(self) -> MicroBatcher:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- the worker ---------------------------------------------------------------------

    def _run(self) -> None:
        while True:
            batch, stop = self._gather()
            if batch:
                self._process(batch)
            if stop:
                return

    def _gather(self) -> tuple[list[_Job], bool]:
        """Block for a first job, then take more until the window closes or the batch is full."""
        first = self._held if self._held is not None else self._queue.get()
        self._held = None
        if first is _STOP:
            return [], True
        batch, size = [first], len(first.items)
        window = self.max_wait_s if self._under_load else 0.0
        deadline = time.monotonic() + window
        stop = self._fill(batch, size, deadline)
        self._under_load = len(batch) > 1
        return batch, stop

    def _fill(self, batch: list[_Job], size: int, deadline: float) -> bool:
        """Add queued jobs to `batch` until the deadline or `max_batch`; True on stop."""
        while size < self.max_batch:
            try:
                job = self._queue.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                break
            if job is _STOP:
                return True
            if size + len(job.items) > self.max_batch:
                self._held = job  # starts the next batch, so no job is split
                break
            batch.append(job)
            size += len(job.items)
        return False

    def _process(self, batch: list[_Job]) -> None:
        # A cancelled request (its client timed out) is dropped before it costs a pass.
        live = [job for job in batch if job.future.set_running_or_notify_cancel()]
        for kind in ("texts", "images"):
            jobs = [job for job in live if job.kind == kind]
            if jobs:
                self._run_jobs(kind, jobs)

    def _run_jobs(self, kind: Kind, jobs: list[_Job]) -> None:
        items = [item for job in jobs for item in job.items]
        try:
            result = self._call(kind, items)
        except Exception as exc:
            if len(jobs) == 1:
                jobs[0].future.set_exception(exc)
                return
            # One request's bad input must not fail its neighbours: run each alone.
            for job in jobs:
                self._run_jobs(kind, [job])
            return
        start = 0
        for job in jobs:
            stop = start + len(job.items)
            job.future.set_result(_slice(result, start, stop))
            start = stop

    def _call(self, kind: Kind, items: list[Any]) -> np.ndarray | ImageEmbeddings:
        if kind == "texts":
            return self.encoder.embed_texts(items)
        return self.encoder.try_embed_images(items)


def _slice(result: np.ndarray | ImageEmbeddings, start: int, stop: int) -> Any:
    """One request's part of a shared result, with positions relative to that request."""
    if isinstance(result, np.ndarray):
        return result[start:stop]
    rows = [j for j, i in enumerate(result.indices) if start <= i < stop]
    vectors = result.vectors[rows] if rows else np.zeros((0, result.vectors.shape[1]), np.float32)
    return ImageEmbeddings(
        vectors,
        [result.indices[j] - start for j in rows],
        {i - start: e for i, e in result.errors.items() if start <= i < stop},
    )
