"""The ingest pipeline shared by `add` and `index_folder`: read, dedupe, embed, write.

Per chunk of inputs: read and hash them (threads), look up which ids and which contents are
stored already (two queries), embed only the new contents, and hand the finished records to
the background writer. The next chunk is embedded while the writer stores this one.
Records are written only once their vector exists, so a run killed at any point leaves
complete records only; the re-run finds them stored and skips them.
"""

from __future__ import annotations

import io
import os
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
from PIL import Image

from clip_multimodal.errors import ImageLoadError
from clip_multimodal.images import SourceKind
from clip_multimodal.index._records import (
    RUN_KEY,
    FailedItem,
    IndexRecord,
    IndexReport,
    Metadata,
    merge_metadata,
)
from clip_multimodal.index._sources import ImageSource, read_many
from clip_multimodal.index._writer import BackgroundWriter
from clip_multimodal.types import ImageInput

if TYPE_CHECKING:
    from clip_multimodal.index._chroma import LockedCollection
    from clip_multimodal.types import Encoder

__all__ = [
    "MAX_CHUNK",
    "CallState",
    "Job",
    "WriteBatch",
    "WritePolicy",
    "add_jobs",
    "chunks",
    "embedding_batch",
    "ingest",
    "ingest_chunk",
    "ingest_read",
    "lost_writes",
    "per_input",
]

_RECENT_VECTORS = 8192  # content vectors kept per call: 16 MiB at 512-d
#: the most inputs one chunk holds
MAX_CHUNK = 512


@dataclass
class Job:
    """One input to index: where it sits in the caller's list, and what to store with it."""

    position: int
    source: ImageInput
    id: str | None = None  # None: the content hash
    metadata: Mapping[str, Any] | None = None
    document: str | None = None
    extra: Metadata = field(default_factory=dict)  # index-owned keys (the folder tag)
    from_folder: bool = False  # a synced file: if it vanishes before it is read, it is gone
    kind: SourceKind | None = None  # the source classified already (a folder scan's stat)


@dataclass
class WriteBatch:
    """Records ready to store: `add` for new ids, `upsert` for changed ones, `update` for
    metadata-only refreshes (a touched file, a re-tagged folder)."""

    new: list[IndexRecord] = field(default_factory=list)
    changed: list[IndexRecord] = field(default_factory=list)
    refreshed: list[tuple[str, Metadata]] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.new) + len(self.changed) + len(self.refreshed)

    def merged(self, other: WriteBatch) -> WriteBatch:
        """Both batches as one write (a later chunk's records come after this one's)."""
        return WriteBatch(
            self.new + other.new, self.changed + other.changed, self.refreshed + other.refreshed
        )


@dataclass
class CallState:
    """What one `add`/`index_folder` call remembers across its chunks.

    Records of earlier chunks may still wait to be written, so the store cannot answer for
    them: `seen` holds the ids already handled (a repeat is stored once, and no write holds
    an id twice) and `vectors` the latest content vectors (a copy is not embedded again).
    """

    seen: set[str] = field(default_factory=set)
    vectors: dict[str, np.ndarray] = field(default_factory=dict)
    #: this call's RUN_KEY value, written on every record it writes.
    run: str = field(default_factory=lambda: uuid.uuid4().hex)
    #: ids of inputs that failed (their old record must not stay searchable).
    failed_ids: list[str] = field(default_factory=list)
    #: ids of folder files that vanished between the scan and the read (gone, not failed).
    vanished_ids: list[str] = field(default_factory=list)
    #: id -> (mtime_ns, size) of each folder file read: what its record holds after the call
    stats: dict[str, tuple[int, int]] = field(default_factory=dict)

    def remember(self, sha256: str, vector: np.ndarray) -> None:
        self.vectors[sha256] = vector
        if len(self.vectors) > _RECENT_VECTORS:
            del self.vectors[next(iter(self.vectors))]  # the oldest


@dataclass
class _Ready:
    job: Job
    source: ImageSource
    id: str
    metadata: Metadata
    stored: Mapping[str, Any] | None  # the existing record's metadata, if the id exists


def ingest_chunk(
    jobs: Sequence[Job],
    collection: LockedCollection,
    encoder: Encoder,
    report: IndexReport,
    state: CallState,
) -> WriteBatch:
    """Prepare one chunk's records and update `report`; the caller writes the batch."""
    results = read_many([j.source for j in jobs], [j.kind for j in jobs])
    return ingest_read(jobs, results, collection, encoder, report, state)


def ingest_read(
    jobs: Sequence[Job],
    results: Sequence[ImageSource | ImageLoadError],
    collection: LockedCollection,
    encoder: Encoder,
    report: IndexReport,
    state: CallState,
) -> WriteBatch:
    """`ingest_chunk` for jobs already read (`results[i]` is `jobs[i]` read, or its error):
    the reads can run elsewhere (a Ray task) and the rest here."""
    seen = state.seen
    ready = _read(jobs, results, report, state)
    stored = collection.metadata([r.id for r in ready])
    batch = WriteBatch()
    to_embed: list[_Ready] = []
    for item in ready:
        item.stored = stored.get(item.id)
        report.ids[item.job.position] = item.id
        if item.id in seen or _same_content(item):
            report.unchanged += 1  # the same image twice in one call is stored once
            if item.id not in seen and not _same_metadata(item):
                batch.refreshed.append((item.id, item.metadata))
        else:
            to_embed.append(item)
        seen.add(item.id)
    vectors = _vectors(to_embed, collection, encoder, report, state)
    for item in to_embed:
        vector = vectors.get(item.source.sha256)
        if vector is None:
            report.ids[item.job.position] = None
            continue
        record = IndexRecord(item.id, item.source.uri, item.metadata, vector, item.job.document)
        if item.stored is None:
            batch.new.append(record)
            report.added += 1
        else:
            batch.changed.append(record)
            report.updated += 1
    return batch


def _read(
    jobs: Sequence[Job],
    results: Sequence[ImageSource | ImageLoadError],
    report: IndexReport,
    state: CallState,
) -> list[_Ready]:
    ready = []
    for job, result in zip(jobs, results, strict=True):
        if isinstance(result, ImageLoadError):
            _note_unread(job, result, report, state)
            continue
        own = result.metadata()
        own.update(job.extra)
        own[RUN_KEY] = state.run
        try:
            meta = merge_metadata(job.metadata, own)
        except ValueError as exc:
            report.failed.append(FailedItem(result.desc, str(exc)))
            continue
        ready.append(_Ready(job, result, job.id or result.sha256, meta, None))
        if job.from_folder and job.id is not None and result.mtime_ns is not None:
            state.stats[job.id] = (result.mtime_ns, result.size)
    return ready


def _note_unread(job: Job, error: ImageLoadError, report: IndexReport, state: CallState) -> None:
    if job.from_folder and job.id is not None and not os.path.isfile(str(job.source)):
        state.vanished_ids.append(job.id)  # deleted (or made a folder) since the scan
        return
    report.failed.append(FailedItem(error.source, error.reason))
    if job.id is not None:
        state.failed_ids.append(job.id)


def _same_content(item: _Ready) -> bool:
    return item.stored is not None and item.stored.get("sha256") == item.source.sha256


def _same_metadata(item: _Ready) -> bool:
    stored = item.stored or {}
    # "mtime" is derived from the exact "mtime_ns"; floats may not survive a server round trip.
    # The run that wrote a record is no reason to write it again.
    return all(stored.get(k) == v for k, v in item.metadata.items() if k not in ("mtime", RUN_KEY))


def _vectors(
    items: Sequence[_Ready],
    collection: LockedCollection,
    encoder: Encoder,
    report: IndexReport,
    state: CallState,
) -> dict[str, np.ndarray]:
    """sha256 -> vector: reused from this call or any stored record with that content, else
    embedded."""
    hashes = {i.source.sha256 for i in items}
    vectors = {h: state.vectors[h] for h in hashes if h in state.vectors}
    missing = [h for h in hashes if h not in vectors]
    if missing:
        vectors.update(_stored_vectors(collection, missing))
    pending: dict[str, _Ready] = {}
    for item in items:
        if item.source.sha256 not in vectors:
            pending.setdefault(item.source.sha256, item)  # identical inputs embed once
    if pending:
        todo = list(pending.values())
        result = encoder.try_embed_images([i.source.payload for i in todo])
        for row, index in enumerate(result.indices):
            vectors[todo[index].source.sha256] = result.vectors[row]
        report.embedded += len(result.indices)
        failed = {todo[i].source.sha256: exc for i, exc in result.errors.items()}
        for item in items:
            exc = failed.get(item.source.sha256)
            if exc is not None:
                report.failed.append(FailedItem(item.source.desc, exc.reason))
                state.failed_ids.append(item.id)
    for sha, vector in vectors.items():
        state.remember(sha, vector)
    return vectors


def lost_writes(collection: LockedCollection, batch: WriteBatch, run: str) -> tuple[int, int]:
    """How many of a written batch's new and changed records another run wrote instead.

    Chroma ignores `add` for an id that exists, so when two processes add the same record,
    the one whose run id is stored wrote it; the other counts it as unchanged.
    """
    lost = []
    for rows in (batch.new, batch.changed):
        if not rows:
            lost.append(0)
            continue
        stored = collection.metadata([r.id for r in rows])
        lost.append(len(rows) - sum(1 for m in stored.values() if m.get(RUN_KEY) == run))
    return lost[0], lost[1]


def _stored_vectors(collection: LockedCollection, hashes: list[str]) -> dict[str, np.ndarray]:
    where = {"sha256": {"$in": hashes}}
    out: dict[str, np.ndarray] = {}
    for record in collection.records(where=where, vectors=True, texts=False):
        sha = record.metadata.get("sha256")
        if isinstance(sha, str) and record.embedding is not None:
            out[sha] = record.embedding
    return out


def ingest(
    jobs: Sequence[Job],
    collection: LockedCollection,
    encoder: Encoder,
    report: IndexReport,
    policy: WritePolicy,
    advance: Callable[[int], None] | None = None,
) -> CallState:
    """Run jobs chunk by chunk, gathering finished chunks into writes of up to
    `policy.size` records or `policy.every_s` seconds, written while the next chunk embeds."""
    state = CallState()
    pending, since = WriteBatch(), time.monotonic()
    lost = [0, 0]  # new and changed records another process wrote first (a server)

    def write(batch: WriteBatch) -> None:
        policy.write(batch)
        if policy.alone():
            return  # nobody else wrote: reading the batch back would only cost time
        for i, n in enumerate(lost_writes(collection, batch, state.run)):
            lost[i] += n

    with BackgroundWriter[WriteBatch](write, WriteBatch.merged) as writer:
        for chunk in chunks(jobs, policy):
            pending = pending.merged(ingest_chunk(chunk, collection, encoder, report, state))
            age = time.monotonic() - since
            if len(pending) >= policy.size or (len(pending) and age >= policy.every_s):
                writer.put(pending)
                pending, since = WriteBatch(), time.monotonic()
            if advance is not None:
                advance(len(chunk))
        if len(pending):
            writer.put(pending)
    report.added -= lost[0]
    report.updated -= lost[1]
    report.unchanged += lost[0] + lost[1]
    return state


def chunks(jobs: Sequence[Job], policy: WritePolicy) -> Iterator[Sequence[Job]]:
    """The jobs in chunks of `policy.chunk`; with `policy.grow_bytes`, a chunk of files whose
    sizes the scan knows grows on while they hold fewer bytes, up to `MAX_CHUNK` files.

    Each chunk pays its store lookups and the model's start and end of a batch run, so a
    folder of small files goes faster in large chunks, while a chunk of photos stays small
    (its encoded bytes are held in memory until the model decodes them).
    """
    start = 0
    while start < len(jobs):
        end = min(start + policy.chunk, len(jobs))
        if policy.grow_bytes is not None:
            held = sum(_known_size(j, policy.grow_bytes) for j in jobs[start:end])
            while end < len(jobs) and end - start < MAX_CHUNK and held < policy.grow_bytes:
                held += _known_size(jobs[end], policy.grow_bytes)
                end += 1
        yield jobs[start:end]
        start = end


def _known_size(job: Job, unknown: int) -> int:
    stat = job.kind.stat if job.kind is not None else None
    return unknown if stat is None else int(stat.st_size)


@dataclass(frozen=True)
class WritePolicy:
    """How one ingest call writes: `write` stores a batch; chunks of `chunk` inputs are
    gathered into writes of up to `size` records or `every_s` seconds of work."""

    write: Callable[[WriteBatch], None]
    chunk: int
    size: int
    every_s: float
    #: grow chunks of files of known size while they hold fewer bytes (see `chunks`);
    #: None keeps every chunk at `chunk` (a chunk size the caller chose)
    grow_bytes: int | None = None
    #: true while this call is the store's only writer (`_lock.sole_writer`): then no write
    #: can be lost to another, and `lost_writes` is skipped.
    alone: Callable[[], bool] = lambda: False


def add_jobs(
    sources: Sequence[ImageInput],
    metadatas: Sequence[Mapping[str, Any] | None] | None,
    ids: Sequence[str] | None,
    documents: Sequence[str | None] | None,
) -> list[Job]:
    """The jobs of one `ImageIndex.add` call, its per-input lists checked against the inputs."""
    sources = _as_list(sources)
    n = len(sources)
    metas = per_input("metadatas", metadatas, n)
    docs = per_input("documents", documents, n)
    given = per_input("ids", ids, n)
    if ids is not None and len(set(given)) != n:
        repeated = sorted(i for i, c in Counter(given).items() if c > 1)[:5]
        raise ValueError(f"ids must be unique within one add call; repeated: {repeated}")
    return [Job(i, s, given[i], metas[i], docs[i]) for i, s in enumerate(sources)]


def embedding_batch(
    vectors: np.ndarray,
    ids: Sequence[str],
    uris: Sequence[str | None] | None,
    metadatas: Sequence[Mapping[str, Any] | None] | None,
    documents: Sequence[str | None] | None,
    modality: str,
    replace: bool,
) -> WriteBatch:
    """The write of `ImageIndex.add_embeddings`: checked vectors with their per-input lists."""
    n = len(ids)
    uri_list = per_input("uris", uris, n)
    metas = per_input("metadatas", metadatas, n)
    docs = per_input("documents", documents, n)
    batch = WriteBatch()
    for i, id_ in enumerate(ids):
        own: Metadata = {"modality": modality}
        if uri_list[i]:
            own["uri"] = str(uri_list[i])
        rows = batch.changed if replace else batch.new
        meta = merge_metadata(metas[i], own)
        rows.append(IndexRecord(id_, uri_list[i], meta, vectors[i], docs[i]))
    return batch


def per_input(name: str, values: Sequence[Any] | None, n: int, unit: str = "input") -> list[Any]:
    """One value per input: `values` as a list, or None for each when not given.

    Raises:
        ValueError: `values` has another length than `n`, naming `name` and the counts.
    """
    if values is None:
        return [None] * n
    values = list(values)
    if len(values) != n:
        raise ValueError(f"{name} has {len(values)} entries for {n} {unit}s; give one per {unit}")
    return values


def _as_list(sources: Sequence[ImageInput]) -> list[ImageInput]:
    single = (str, bytes, bytearray, os.PathLike, io.IOBase, Image.Image)
    if isinstance(sources, single) or (isinstance(sources, np.ndarray) and sources.ndim < 4):
        raise TypeError(f"pass a list of images, not one {type(sources).__name__}: add([image])")
    return list(sources)
