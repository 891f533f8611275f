"""The ingest pipeline shared by `add` and `index_folder`: read, dedupe, embed, write.

Per chunk of inputs: read and hash them (threads), look up which ids and which contents are
stored already (two queries), embed only the new contents, and hand the finished records to
the background writer. The next chunk is embedded while the writer stores this one.
Records are written only once their vector exists, so a run killed at any point leaves
complete records only; the re-run finds them stored and skips them.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from clip_multimodal.errors import ImageLoadError
from clip_multimodal.index._records import (
    RUN_KEY,
    FailedItem,
    IndexReport,
    Metadata,
    merge_metadata,
)
from clip_multimodal.index._sources import ImageSource, read_many
from clip_multimodal.types import ImageInput

if TYPE_CHECKING:
    from clip_multimodal.index._store import LockedCollection
    from clip_multimodal.types import Encoder

__all__ = ["CallState", "Job", "WriteBatch", "ingest_chunk", "lost_writes"]

_RECENT_VECTORS = 8192  # content vectors kept per call: 16 MiB at 512-d


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


@dataclass
class WriteBatch:
    """Records ready to store: `add` for new ids, `upsert` for changed ones, `update` for
    metadata-only refreshes (a touched file, a re-tagged folder)."""

    new: list[tuple[str, np.ndarray, Metadata, str | None, str | None]] = field(
        default_factory=list
    )
    changed: list[tuple[str, np.ndarray, Metadata, str | None, str | None]] = field(
        default_factory=list
    )
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
    seen = state.seen
    ready = _read(jobs, report, state)
    stored = _stored_metadata(collection, [r.id for r in ready])
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
        record = (item.id, vector, item.metadata, item.source.uri, item.job.document)
        if item.stored is None:
            batch.new.append(record)
            report.added += 1
        else:
            batch.changed.append(record)
            report.updated += 1
    return batch


def _read(jobs: Sequence[Job], report: IndexReport, state: CallState) -> list[_Ready]:
    ready = []
    for job, result in zip(jobs, read_many([j.source for j in jobs]), strict=True):
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
    return ready


def _note_unread(job: Job, error: ImageLoadError, report: IndexReport, state: CallState) -> None:
    if job.from_folder and job.id is not None and not os.path.isfile(str(job.source)):
        state.vanished_ids.append(job.id)  # deleted (or made a folder) since the scan
        return
    report.failed.append(FailedItem(error.source, error.reason))
    if job.id is not None:
        state.failed_ids.append(job.id)


def _stored_metadata(collection: LockedCollection, ids: list[str]) -> dict[str, Mapping[str, Any]]:
    if not ids:
        return {}
    got = collection.get(ids=list(dict.fromkeys(ids)), include=["metadatas"])
    metas = got["metadatas"] or [{}] * len(got["ids"])
    return {id_: dict(meta or {}) for id_, meta in zip(got["ids"], metas, strict=True)}


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
        got = collection.get(ids=[r[0] for r in rows], include=["metadatas"])
        metas = got["metadatas"] or []
        lost.append(len(rows) - sum(1 for m in metas if (m or {}).get(RUN_KEY) == run))
    return lost[0], lost[1]


def _stored_vectors(collection: LockedCollection, hashes: list[str]) -> dict[str, np.ndarray]:
    where: Any = {"sha256": {"$in": hashes}}
    got = collection.get(where=where, include=["embeddings", "metadatas"])
    embeddings = got["embeddings"]
    if embeddings is None or len(got["ids"]) == 0:
        return {}
    metas = got["metadatas"] or []
    out: dict[str, np.ndarray] = {}
    for meta, vector in zip(metas, embeddings, strict=True):
        sha = (meta or {}).get("sha256")
        if isinstance(sha, str):
            out[sha] = np.asarray(vector, dtype=np.float32)
    return out
