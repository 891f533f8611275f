"""A micro-batcher: concurrent requests share forward passes.

Each request hands its texts or images to `MicroBatcher` and gets a future. One worker thread
takes the first waiting job plus every job queued behind it (up to `max_batch` items) and runs
one encoder call per modality for all of them; each request's slice of the result goes back to
its own future. One thread owns the encoder, so requests never fight over it, and a batch of
32 texts costs far less than 32 passes of one.

Requests that arrive during a forward pass wait for it anyway, so they batch for free. The
short wait window is added only under load (the last batch had company): a lone client then
pays no extra latency, and a busy server still gathers the stragglers.

A request whose await is cancelled (its deadline passed) is abandoned: queued, it is dropped;
running, its images stop being decoded. Images go to the encoder in slices of `image_slice`
(about one item per decode thread), and each slice leaves out the abandoned requests' items,
so a request with ten huge images cannot hold the worker long after its 504.
"""

from __future__ import annotations

import asyncio
import itertools
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
    abandoned: bool = False  # set from the event loop when the request gave up waiting


_STOP = object()


class MicroBatcher:
    """Merges concurrent embedding requests into shared encoder calls.

    Args:
        encoder: the model; only the worker thread calls it.
        max_batch: most items per encoder call (one request larger than this runs alone).
            `max_batch=1` gives one request per forward pass, the baseline batching beats.
        max_wait_s: how long the first job of a batch waits for company, when the previous
            batch merged several requests (an idle server answers a lone request at once).
        image_slice: most images per encoder call; between slices, abandoned requests'
            images are dropped (default: `min(max_batch, 8)`).

    Example:
        >>> batcher = MicroBatcher(encoder, max_batch=32, max_wait_s=0.005)
        >>> vectors = await batcher.embed_texts(["a red circle"])
    """

    def __init__(
        self,
        encoder: Encoder,
        *,
        max_batch: int = 32,
        max_wait_s: float = 0.005,
        image_slice: int | None = None,
    ) -> None:
        if max_batch < 1:
            raise ValueError(f"max_batch must be at least 1, got {max_batch}")
        if max_wait_s < 0:
            raise ValueError(f"max_wait_s must be >= 0, got {max_wait_s}")
        self.encoder = encoder
        self.max_batch = max_batch
        self.max_wait_s = max_wait_s
        self.image_slice = max(1, image_slice or min(max_batch, 8))
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
        return self._submit("texts", list(texts)).future

    def submit_images(self, images: Sequence[ImageInput]) -> Future[ImageEmbeddings]:
        """Queue images; the future gives an ImageEmbeddings whose indices and errors refer
        to positions in `images` (one bad image fails only itself)."""
        return self._submit("images", list(images)).future

    async def embed_texts(self, texts: Sequence[str]) -> np.ndarray:
        """Awaitable `submit_texts`; cancelling the await drops the job if not yet started."""
        result: np.ndarray = await self._wait(self._submit("texts", list(texts)))
        return result

    async def embed_images(self, images: Sequence[ImageInput]) -> ImageEmbeddings:
        """Awaitable `submit_images`; cancelling the await stops decoding the rest."""
        result: ImageEmbeddings = await self._wait(self._submit("images", list(images)))
        return result

    @staticmethod
    async def _wait(job: _Job) -> Any:
        try:
            return await asyncio.wrap_future(job.future)
        except asyncio.CancelledError:
            job.abandoned = True  # running: the worker drops what is left of it
            raise

    def _submit(self, kind: Kind, items: list[Any]) -> _Job:
        job = _Job(kind, items)
        with self._lock:
            if self._closed:
                raise BatcherClosedError("the batcher is closed; create a new one")
            self._queue.put(job)
        return job

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
        try:
            results = self._texts(jobs) if kind == "texts" else self._images(jobs)
        except Exception as exc:
            if len(jobs) == 1:
                jobs[0].future.set_exception(exc)
                return
            # One request's bad input must not fail its neighbours: run each alone.
            for job in jobs:
                self._run_jobs(kind, [job])
            return
        for job, result in zip(jobs, results, strict=True):
            job.future.set_result(result)

    def _texts(self, jobs: list[_Job]) -> list[np.ndarray]:
        vectors = self.encoder.embed_texts([item for job in jobs for item in job.items])
        bounds = np.cumsum([0] + [len(job.items) for job in jobs])
        return [vectors[a:b] for a, b in itertools.pairwise(bounds)]

    def _images(self, jobs: list[_Job]) -> list[ImageEmbeddings]:
        """Each job's ImageEmbeddings, from encoder calls of `image_slice` items at most."""
        parts = [_Parts() for _ in jobs]
        where = [(j, i) for j, job in enumerate(jobs) for i in range(len(job.items))]
        for start in range(0, len(where), self.image_slice):
            chunk = where[start : start + self.image_slice]
            live = [(j, i) for j, i in chunk if not jobs[j].abandoned]
            if not live:
                continue
            result = self.encoder.try_embed_images([jobs[j].items[i] for j, i in live])
            for row, position in enumerate(result.indices):
                j, i = live[position]
                parts[j].add(i, result.vectors[row])
            for position, error in result.errors.items():
                j, i = live[position]
                parts[j].errors[i] = error
        return [part.result(self.encoder.dim) for part in parts]


@dataclass
class _Parts:
    """One request's share of several encoder calls, in its own positions."""

    rows: list[np.ndarray] = field(default_factory=list)
    indices: list[int] = field(default_factory=list)
    errors: dict[int, Any] = field(default_factory=dict)

    def add(self, index: int, vector: np.ndarray) -> None:
        self.rows.append(vector)
        self.indices.append(index)

    def result(self, dim: int) -> ImageEmbeddings:
        if not self.rows:
            return ImageEmbeddings(np.zeros((0, dim), np.float32), [], self.errors)
        return ImageEmbeddings(np.stack(self.rows).astype(np.float32), self.indices, self.errors)
