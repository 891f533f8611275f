"""Documents in the index: each PDF or PPTX becomes the records of its images, kept in sync.

A document is one unit of sync. It is skipped unread when its size and mtime match its
records, then when its content hash does (the records' `doc_*` keys are refreshed). Else its
images are extracted page by page and ingested in small chunks (a long document never holds
more than one chunk of images), and the records it no longer yields are deleted: a changed
document replaces exactly its own records. A document that cannot be read is one failure in
the report (naming the file and the reason) and loses its records; the batch goes on.

Record ids are `doc:` + the SHA-256 of the document's path and the image's content hash: a
document owns its records, and an image that stays the same keeps its id and vector.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from clip_multimodal.documents import (
    DocumentImage,
    DocumentOptions,
    ExtractFailure,
    extract_images,
    is_document,
)
from clip_multimodal.errors import ImageLoadError, MissingDependencyError
from clip_multimodal.images import sha256_file
from clip_multimodal.index._ingest import CallState, Job, WriteBatch
from clip_multimodal.index._records import FailedItem, IndexReport, Metadata

if TYPE_CHECKING:
    from clip_multimodal.index._chroma import LockedCollection

__all__ = ["DocumentSync", "document_id", "is_document_input", "is_document_record"]

Ingest = Callable[[Sequence[Job], IndexReport, Callable[[int], None] | None], CallState]
_CHUNK = 32  # images per ingest call: what a document holds in memory at once


def document_id(source: str, sha256: str) -> str:
    """The record id of one image of one document."""
    return (
        "doc:" + hashlib.sha256(f"{source}\n{sha256}".encode("utf-8", "surrogatepass")).hexdigest()
    )


def is_document_record(metadata: Mapping[str, Any]) -> bool:
    """A record written for a document's image (folder sync leaves these to `DocumentSync`)."""
    return "doc_sha256" in metadata


def is_document_input(source: object) -> bool:
    """A path (str or PathLike) naming an existing file with a document extension."""
    if not isinstance(source, (str, os.PathLike)):
        return False
    text = os.fspath(source)
    return isinstance(text, str) and is_document(text) and os.path.isfile(os.path.expanduser(text))


class DocumentSync:
    """Brings the records of documents in line with the files, one document at a time.

    Args:
        collection: the open collection.
        ingest: `ImageIndex._ingest` (read, dedupe, embed, write).
        write: `ImageIndex._write` (for metadata-only refreshes).
        options: how documents become images.
        verify: hash every document, even one whose size and mtime match.
    """

    def __init__(
        self,
        collection: LockedCollection,
        ingest: Ingest,
        write: Callable[[WriteBatch], None],
        options: DocumentOptions | None = None,
        verify: bool = False,
    ) -> None:
        self._collection = collection
        self._ingest = ingest
        self._write = write
        self._options = options or DocumentOptions()
        self._verify = verify

    def sync(
        self,
        paths: Iterable[str | os.PathLike[str]],
        report: IndexReport,
        extra: Metadata | None = None,
        metadata: Sequence[Mapping[str, Any] | None] | None = None,
    ) -> None:
        """Sync each document into `report`; `extra` (the folder tag) and `metadata` (the
        user's, one per document) go on every record of it."""
        for i, path in enumerate(paths):
            source = str(Path(path).expanduser().absolute())
            user = metadata[i] if metadata is not None else None
            self._one(source, report, extra or {}, user)

    def sync_folder(
        self, paths: Sequence[str], folder: str, stored: Mapping[str, str], report: IndexReport
    ) -> None:
        """A synced folder's documents, tagged with the folder; the records in `stored` (the
        folder's document records before the sync, id -> source) of gone ones go."""
        self.sync(paths, report, {"folder": folder})
        gone = {id_ for id_, source in stored.items() if not os.path.isfile(source)}
        self._delete(gone, report)

    def _one(
        self, source: str, report: IndexReport, extra: Metadata, user: Mapping[str, Any] | None
    ) -> None:
        report.documents += 1
        stored = {
            r.id: r.metadata
            for r in self._collection.records(where={"source": source}, texts=False)
            if is_document_record(r.metadata)
        }
        try:
            facts = self._facts(source, stored)
        except ImageLoadError as exc:
            self._fail(source, exc.reason, stored, report)
            return
        if facts is None:  # unchanged
            report.unchanged += len(stored)
            report.document_images += len(stored)
            return
        kept = self._extract(source, {**extra, **facts}, user, report)
        if kept is None:
            self._fail(source, "", stored, report, counted=True)
            return
        report.document_images += len(kept)
        self._delete(set(stored) - kept, report)

    def _facts(self, source: str, stored: Mapping[str, Mapping[str, Any]]) -> Metadata | None:
        """The document's `doc_*` keys, or None when its records are up to date."""
        try:
            info = os.stat(source)
        except OSError as exc:
            raise ImageLoadError(source, f"cannot stat ({exc.strerror})") from exc
        facts: Metadata = {"doc_size": info.st_size, "doc_mtime_ns": info.st_mtime_ns}
        metas = list(stored.values())
        same_stat = all(m.get("doc_size") == info.st_size for m in metas) and all(
            m.get("doc_mtime_ns") == info.st_mtime_ns for m in metas
        )
        if metas and same_stat and not self._verify:
            return None
        facts["doc_sha256"] = sha256_file(source)
        if metas and all(m.get("doc_sha256") == facts["doc_sha256"] for m in metas):
            # Touched, not changed: the images are the same; refresh the stat keys only.
            if not same_stat:
                refreshed = [(id_, {**m, **facts}) for id_, m in stored.items()]
                self._write(WriteBatch(refreshed=refreshed))
            return None
        return facts

    def _extract(
        self, source: str, facts: Metadata, user: Mapping[str, Any] | None, report: IndexReport
    ) -> set[str] | None:
        """Ingest the document's images chunk by chunk; their ids, or None if it cannot be
        opened (the failure is in `report`)."""
        kept: set[str] = set()
        chunk: list[DocumentImage] = []
        try:
            for item in extract_images(source, self._options):
                if isinstance(item, ExtractFailure):
                    report.failed.append(FailedItem(item.source, item.reason))
                    continue
                chunk.append(item)
                if len(chunk) >= _CHUNK:
                    kept |= self._ingest_chunk(source, chunk, facts, user, report)
                    chunk = []
        except (ImageLoadError, MissingDependencyError) as exc:
            reason = exc.reason if isinstance(exc, ImageLoadError) else str(exc)
            report.failed.append(FailedItem(source, reason))
            return None
        if chunk:
            kept |= self._ingest_chunk(source, chunk, facts, user, report)
        return kept

    def _ingest_chunk(
        self,
        source: str,
        images: Sequence[DocumentImage],
        facts: Metadata,
        user: Mapping[str, Any] | None,
        report: IndexReport,
    ) -> set[str]:
        jobs = [
            Job(
                i,
                image.data,
                document_id(source, image.sha256),
                user,
                extra={**image.provenance.metadata(), **facts, "uri": image.provenance.uri},
            )
            for i, image in enumerate(images)
        ]
        part = IndexReport(ids=[None] * len(jobs))
        self._ingest(jobs, part, None)
        report.added += part.added
        report.updated += part.updated
        report.unchanged += part.unchanged
        report.embedded += part.embedded
        report.failed.extend(part.failed)
        return {id_ for id_ in part.ids if id_ is not None}

    def _fail(
        self,
        source: str,
        reason: str,
        stored: Mapping[str, Any],
        report: IndexReport,
        counted: bool = False,
    ) -> None:
        """A document that cannot be read loses its records (they no longer match it)."""
        if not counted:
            report.failed.append(FailedItem(source, reason))
        self._delete(set(stored), report)

    def _delete(self, ids: set[str], report: IndexReport) -> None:
        if ids:
            self._collection.delete(ids=sorted(ids))
            report.removed += len(ids)
