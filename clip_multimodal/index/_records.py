"""What the index stores and returns: record metadata, hits, records and reports."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from clip_multimodal.documents import Provenance

__all__ = [
    "RESERVED_KEYS",
    "FailedItem",
    "IndexRecord",
    "IndexReport",
    "SearchHit",
]

Metadata = dict[str, "str | int | float | bool"]

#: The metadata key naming the `add`/`index_folder` run that last wrote a record: with
#: several writers on one server, each run counts only the records that carry its own.
RUN_KEY = "index_run"

#: Metadata keys the index writes itself; user metadata cannot override them.
RESERVED_KEYS = frozenset(
    {
        "uri",
        "mime",
        "width",
        "height",
        "size",
        "mtime",
        "mtime_ns",
        "sha256",
        "modality",
        "folder",
        RUN_KEY,
    }
)


@dataclass(frozen=True)
class SearchHit:
    """One search result.

    Attributes:
        id: the record id.
        uri: the image's path or URL; None for images added as bytes, base64 or pixels.
        score: cosine similarity between the query and the image, in [-1, 1], higher is
            better. Chroma's distance `d` is converted by the collection's space: `1 - d`
            for cosine and ip, `1 - d / 2` for (squared) l2.
        metadata: the record's metadata (uri, mime, width, height, size, mtime, mtime_ns,
            sha256, modality, index_run and any user keys).
        document: the text stored with the record (a caption), if any.
    """

    id: str
    uri: str | None
    score: float
    metadata: Mapping[str, Any]
    document: str | None = None

    @property
    def provenance(self) -> Provenance | None:
        """Where the image sits in a document (PDF, PPTX): source, page, kind, index,
        size, bbox and title; None for an image that is not from a document."""
        return Provenance.from_metadata(self.metadata)


@dataclass(frozen=True)
class IndexRecord:
    """One stored record, as `ImageIndex.get` returns it (embedding only when asked for), and
    as the index hands it to the store to write."""

    id: str
    uri: str | None
    metadata: Mapping[str, Any]
    embedding: np.ndarray | None = None
    document: str | None = None


@dataclass(frozen=True)
class FailedItem:
    """An input that was not indexed, and why (the rest of the batch was)."""

    source: str
    reason: str


@dataclass
class IndexReport:
    """What an `add` or `index_folder` call did.

    Attributes:
        added: new records written.
        updated: existing records whose image changed and were rewritten.
        unchanged: inputs already indexed as they are (nothing re-embedded).
        removed: records deleted because their file no longer exists, is no longer a file,
            or can no longer be read as an image (then it is also listed in `failed`).
        failed: each input that could not be indexed, with the reason.
        embedded: images that went through the model; the rest reused a stored vector.
        ids: for `add`, the record id of each input in order (None where it failed, and
            for a document, whose images are many records).
        documents: documents (PDF, PPTX) read or found unchanged.
        document_images: the image records those documents hold after the call.
    """

    added: int = 0
    updated: int = 0
    unchanged: int = 0
    removed: int = 0
    failed: list[FailedItem] = field(default_factory=list)
    embedded: int = 0
    ids: list[str | None] = field(default_factory=list)
    documents: int = 0
    document_images: int = 0

    def __str__(self) -> str:
        text = (
            f"added {self.added}, updated {self.updated}, unchanged {self.unchanged}, "
            f"removed {self.removed}, failed {len(self.failed)} (embedded {self.embedded})"
        )
        if self.documents:
            text += f"; {self.documents} documents holding {self.document_images} images"
        return text


def merge_metadata(user: Mapping[str, Any] | None, own: Metadata) -> Metadata:
    """User keys first, then the index's own keys, which win (they drive sync and hits)."""
    merged: Metadata = {}
    if user:
        clash = RESERVED_KEYS.intersection(user)
        if clash:
            raise ValueError(
                f"metadata keys {sorted(clash)} are reserved by the index; rename them "
                f"(reserved: {sorted(RESERVED_KEYS)})"
            )
        merged.update(user)
    merged.update(own)
    return merged


def uri_of(metadata: Mapping[str, Any] | None, uri: str | None = None) -> str | None:
    """The record's URI: Chroma's `uris` field where present, else our `uri` metadata key."""
    if uri:
        return uri
    value = (metadata or {}).get("uri")
    return value if isinstance(value, str) and value else None
