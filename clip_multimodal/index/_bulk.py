"""Writing records embedded elsewhere (a GPU job) through the index's background writer.

`ImageIndex.writer()` hands out an `IndexWriter`; the caller embeds batch k+1 while the
writer stores batch k, exactly as `ImageIndex.add` overlaps its own chunks.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from clip_multimodal.index._ingest import WriteBatch
from clip_multimodal.index._records import IndexRecord
from clip_multimodal.index._sources import ImageSource
from clip_multimodal.index._writer import BackgroundWriter

__all__ = ["ImageRecord", "IndexWriter"]


@dataclass(frozen=True)
class ImageRecord:
    """One image record ready to store: its id, vector, metadata and URI.

    Attributes:
        id: the record id.
        embedding: the vector, from the index's model (normalized when written).
        metadata: the record's metadata (str, int, float or bool values).
        uri: the image's path or URL, or None.
        document: an optional text (a caption).
    """

    id: str
    embedding: np.ndarray
    metadata: Mapping[str, Any]
    uri: str | None = None
    document: str | None = None

    @classmethod
    def from_source(cls, source: ImageSource, embedding: np.ndarray) -> ImageRecord:
        """The record `ImageIndex.add` writes for this source: content-hash id, same metadata.

        Args:
            source: the input as `read_image_source` read it.
            embedding: its vector from the index's model.
        """
        return cls(source.sha256, embedding, source.metadata(), source.uri)


class IndexWriter:
    """Stores batches of `ImageRecord`s on one background thread, in order.

    Get one from `ImageIndex.writer()`. Records are added as new: an id already stored
    keeps its record (as `ImageIndex.add` would find it unchanged). Batches waiting while
    the store is busy are merged into one larger write.
    """

    def __init__(
        self, writer: BackgroundWriter[WriteBatch], check: Callable[[Any, int], np.ndarray]
    ) -> None:
        self._writer = writer
        self._check = check  # the index's shape check and L2 normalization

    def put(self, records: Iterable[ImageRecord]) -> None:
        """Queue records for writing; returns at once unless the writer's queue is full.

        Args:
            records: the batch; an empty batch is ignored.

        Raises:
            ValueError: a vector is not of the index model's dimension (nothing queued).
            Exception: the error of an earlier failed write, re-raised here.
        """
        rows = list(records)
        if not rows:
            return
        vectors = self._check([r.embedding for r in rows], len(rows))
        batch = WriteBatch()
        for record, vector in zip(rows, vectors, strict=True):
            meta = dict(record.metadata)
            batch.new.append(IndexRecord(record.id, record.uri, meta, vector, record.document))
        self._writer.put(batch)

    def put_batch(self, batch: WriteBatch) -> None:
        """Queue a batch the index's own ingest prepared (`ingest_read`): its new records are
        added, changed ones overwritten and refreshed ones updated, as `index_folder` does."""
        if len(batch):
            self._writer.put(batch)
