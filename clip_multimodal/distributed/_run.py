"""`index_with_ray`: one plan on the driver, the reading and embedding on a Ray cluster."""

from __future__ import annotations

import dataclasses
import functools
import json
import math
import os
import sys
import time
import uuid
from collections.abc import Iterable, Sequence
from typing import Any

from clip_multimodal.distributed._sources import plan_source
from clip_multimodal.distributed._stages import Embedder, EncoderFactory, load_encoder, read_batch
from clip_multimodal.errors import require
from clip_multimodal.index import ImageIndex
from clip_multimodal.index._records import FailedItem, IndexReport
from clip_multimodal.index._sync import DEFAULT_PATTERNS, FolderSync, remove_gone
from clip_multimodal.models import DEMO_MODEL, ModelSpec

__all__ = ["index_with_ray"]

_READ_MEMORY = 256 * 2**20  # bytes reserved per read task


def index_with_ray(
    source: str | os.PathLike[str],
    collection: str = "images",
    *,
    model: ModelSpec | EncoderFactory | None = None,
    host: str,
    port: int,
    ray_address: str | None = None,
    batch_size: int | None = None,
    num_workers: int = 1,
    num_gpus_per_worker: float | None = None,
    num_cpus_per_worker: float = 1.0,
    recursive: bool = True,
    patterns: Sequence[str] = DEFAULT_PATTERNS,
    verify: bool = False,
    progress: bool = True,
) -> IndexReport:
    """Sync a folder or a list of images into a collection on a Chroma server, on Ray.

    The plan is made once, here, with `ImageIndex.index_folder`'s semantics: unchanged files
    (same size and mtime) are not read, new and changed ones are read and embedded unless
    their content is stored already (a renamed file reuses its vector), and the records of
    gone files are deleted after every write. Record ids are those `index_folder` gives, so
    both build the same collection. Reading and decoding run in Ray tasks; preprocessing,
    embedding and writing run in `num_workers` actors, each loading the model once. A bad
    image is a failure in the report; a worker that dies is replaced by Ray and its batch
    retried, writing the same ids again.

    Args:
        source: a folder (recursive, with `patterns`), or a `.txt` file (one path or URL a
            line; `#` comments) or `.parquet` file (a `uri` or `path` column) listing images.
            Relative paths are relative to the list file's folder.
        collection: the collection name.
        model: a `ModelSpec` (default: the demo model), or a picklable zero-argument
            callable that returns an `Encoder` (each actor calls it once).
        host: the Chroma server every worker writes to.
        port: its port.
        ray_address: the cluster to join (`ray://...` or `HOST:PORT`); None joins the
            running one (`ray.init()` already called, or `RAY_ADDRESS`), else starts a local
            one for the job.
        batch_size: images per batch and per forward pass (default: the spec's, else 64).
        num_workers: encoder actors.
        num_gpus_per_worker: GPUs per actor; None: 1 when the cluster has GPUs, else 0.
        num_cpus_per_worker: CPUs each actor reserves; the pool must leave the cluster
            one CPU for the read tasks (else ValueError).
        recursive, patterns, verify: as for `index_folder`.
        progress: show Ray's progress and print a summary line to stderr.

    Returns:
        The same `IndexReport` as `index_folder`: added, updated, unchanged, removed,
        failed (each with the reason) and embedded.

    Raises:
        MissingDependencyError: Ray is not installed (`pip install "clip-multimodal[ray]"`).
        IndexUnavailableError: the Chroma server cannot be reached.
        IncompatibleIndexError: the collection was built with another model.
    """
    ray: Any = require("ray", "ray", "index_with_ray")
    started = time.monotonic()
    make_encoder, batch = _factory(model, batch_size)
    driver_encoder = make_encoder()  # the model check and dimension, before any job runs
    index = ImageIndex(driver_encoder, collection, host=host, port=port)
    store = index._store  # the index's guarded collection, as index_folder uses it
    sync = plan_source(source, store, recursive, patterns, verify)
    report = IndexReport(unchanged=len(sync.plan.unchanged))
    dropped: list[str] = []
    if sync.plan.todo:
        owned = _connect(ray, ray_address)
        try:
            gpus = _gpus(ray, num_gpus_per_worker)
            _check_room(ray, num_workers, num_cpus_per_worker)
            options = _Options(batch, num_workers, gpus, num_cpus_per_worker, progress)
            rows = _run_job(
                ray,
                sync,
                make_encoder,
                (collection, host, port),
                options,
                getattr(driver_encoder, "max_decode_bytes", None),
            )
        finally:
            if owned:
                ray.shutdown()
        dropped = _merge(report, rows)
    remove_gone(store, sync, dropped, report)
    if sync.documents or sync.stored_documents:  # a gone document's records go too
        # PDFs and decks sync on the driver, as index_folder syncs them: a document is one
        # unit of sync (its records replaced together), and its images come out one at a time.
        index._document_sync(None, verify).sync_folder(
            sync.documents, sync.tag, sync.stored_documents, report
        )
    if progress:
        _summary(source, report, num_workers, time.monotonic() - started)
    return report


@dataclasses.dataclass(frozen=True)
class _Options:
    batch_size: int
    workers: int
    gpus: float
    cpus: float
    progress: bool


def _factory(
    model: ModelSpec | EncoderFactory | None, batch_size: int | None
) -> tuple[EncoderFactory, int]:
    if model is None:
        model = ModelSpec(DEMO_MODEL, None)
    if isinstance(model, ModelSpec):
        if batch_size is not None:
            model = dataclasses.replace(model, batch_size=batch_size)
        return functools.partial(load_encoder, model), model.batch_size or 64
    if not callable(model):
        raise TypeError(
            f"model must be a ModelSpec or a callable returning an encoder, not {model!r}"
        )
    return model, batch_size or 64


def _connect(ray: Any, address: str | None) -> bool:
    """Join the cluster; True when this call started Ray (and so shuts it down)."""
    if ray.is_initialized():
        return False
    ray.init(address=address, log_to_driver=True)
    return True


def _gpus(ray: Any, asked: float | None) -> float:
    if asked is not None:
        return asked
    return 1.0 if ray.cluster_resources().get("GPU", 0) > 0 else 0.0


def _check_room(ray: Any, workers: int, cpus: float) -> None:
    """Refuse a pool that leaves no CPU for the read tasks: the job would wait forever."""
    total = float(ray.cluster_resources().get("CPU", 0))
    if workers * cpus + 1 > total:
        raise ValueError(
            f"{workers} worker(s) x {cpus:g} CPU leave no CPU for reading on this cluster "
            f"({total:g} CPUs): lower num_workers or num_cpus_per_worker, or add CPUs"
        )


def _run_job(
    ray: Any,
    sync: FolderSync,
    make_encoder: EncoderFactory,
    where: tuple[str, str, int],
    options: _Options,
    max_decode_bytes: int | None,
) -> list[str]:
    """Run the read tasks and the embedding actors; one JSON report row per batch."""
    context = ray.data.DataContext.get_current()
    context.enable_progress_bars = options.progress
    jobs = sync.jobs()
    rows = [{"position": j.position, "uri": str(j.source), "id": j.id} for j in jobs]
    # One block per batch, and each stage takes whole blocks: a batch is one actor call, so
    # a worker that dies loses whole batches only, and Ray's retry redoes them exactly.
    blocks = max(1, math.ceil(len(rows) / options.batch_size))
    collection, host, port = where
    run = uuid.uuid4().hex
    dataset = (
        ray.data.from_items(rows, override_num_blocks=blocks)
        .map_batches(
            read_batch,
            fn_kwargs={"max_decode_bytes": max_decode_bytes},
            batch_size=None,
            num_cpus=1,
            # Room for a batch of decoded images; asked of the reads only, it also keeps Ray
            # Data from fusing them into the actors: reading and decoding stay in tasks.
            memory=_READ_MEMORY,
        )
        .map_batches(
            Embedder,
            fn_constructor_args=(
                make_encoder,
                collection,
                host,
                port,
                sync.tag,
                sync.from_folder,
                run,
            ),
            batch_size=None,
            compute=ray.data.ActorPoolStrategy(size=options.workers),
            num_gpus=options.gpus,
            num_cpus=options.cpus,
        )
    )
    return [str(row["report"]) for row in dataset.iter_rows()]


def _merge(report: IndexReport, rows: Iterable[str]) -> list[str]:
    """Add the batches' reports into `report`; return the ids to drop if they were stored."""
    dropped: list[str] = []
    for row in rows:
        part = json.loads(row)
        report.added += part["added"]
        report.updated += part["updated"]
        report.unchanged += part["unchanged"]
        report.embedded += part["embedded"]
        report.failed += [FailedItem(source, reason) for source, reason in part["failed"]]
        dropped += part["dropped"]
    return dropped


def _summary(
    source: str | os.PathLike[str], report: IndexReport, workers: int, seconds: float
) -> None:
    done = report.added + report.updated + report.unchanged + len(report.failed)
    rate = done / seconds if seconds > 0 else 0.0
    print(
        f"{os.fspath(source)}: {report} on Ray with {workers} worker(s) in {seconds:.1f} s "
        f"({rate:.0f} images/s)",
        file=sys.stderr,
    )
