"""Every call on an open Chroma collection, in neutral terms: records in, records and hits out.

Chroma answers in column-wise dicts (`ids`, `metadatas`, `uris`, `documents`, `distances`,
`embeddings`, one list per column, nested once more per query) and scores by distance in
the collection's space. Here they become `IndexRecord`s and `SearchHit`s scored as cosine
similarity, so the index and the ingest pipeline never see Chroma's shapes.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from clip_multimodal.index._health import StoreRef, full_query, guarded
from clip_multimodal.index._records import IndexRecord, Metadata, SearchHit, uri_of

if TYPE_CHECKING:
    from chromadb.api.models.Collection import Collection

__all__ = ["IDS_PAGE", "PAGE", "SPACES", "LockedCollection", "hits_from_query", "similarity"]

Where = Mapping[str, Any]

#: Chroma's distance spaces.
SPACES = ("cosine", "ip", "l2")

_COLUMNS = ("metadatas", "uris", "documents")
#: Records fetched per call when reading a whole folder's records.
PAGE = 10_000
#: Ids fetched per call when reading only ids.
IDS_PAGE = 250_000


class LockedCollection:
    """A collection whose every call holds one lock and goes through `guarded`.

    Chroma 1.5's local HNSW segment is not safe under concurrent reads and writes (a read
    racing the first flush fails with "Error creating hnsw segment reader: Nothing found on
    disk", chroma-core/chroma#4212), so the index serializes its own calls. Calls are
    milliseconds; embedding, the slow part, runs outside the lock. `guarded` retries passing
    race errors and turns damage and timeouts into errors that name `ref` and the fix.
    Hits are scored from the collection's distance `space` (see `similarity`).
    """

    def __init__(
        self, collection: Collection, ref: StoreRef | None = None, space: str = "cosine"
    ) -> None:
        self.collection = collection
        self.ref = ref or StoreRef()
        self.space = space
        self.lock = threading.RLock()

    def _call(self, method: str, kwargs: dict[str, Any]) -> Any:
        with self.lock:
            return guarded(lambda: getattr(self.collection, method)(**kwargs), self.ref)

    # -- reading ----------------------------------------------------------------------------

    def records(
        self,
        ids: Sequence[str] | None = None,
        where: Where | None = None,
        *,
        vectors: bool = False,
        texts: bool = True,
        limit: int | None = None,
        offset: int | None = None,
    ) -> list[IndexRecord]:
        """The stored records of these ids and/or matching `where`, in the store's order.

        `texts` fetches Chroma's `uris` and `documents` columns too, `vectors` the embeddings;
        `limit` and `offset` page through them. Many ids are asked for `PAGE` at a time
        (Chroma refuses a get of some 33,000 ids: "too many SQL variables").
        """
        if ids is not None and not ids:
            return []  # Chroma refuses an empty list of ids
        if ids is not None and len(ids) > PAGE and limit is None and offset is None:
            ids = list(ids)
            return [
                record
                for start in range(0, len(ids), PAGE)
                for record in self.records(
                    ids[start : start + PAGE], where, vectors=vectors, texts=texts
                )
            ]
        include = ["metadatas"] + (["uris", "documents"] if texts else [])
        include += ["embeddings"] if vectors else []
        got = self._call(
            "get",
            {
                "ids": list(ids) if ids is not None else None,
                "where": dict(where) if where else None,
                "include": include,
                "limit": limit,
                "offset": offset,
            },
        )
        n = len(got["ids"])
        metadatas, uris, documents = (_column(got.get(key), n) for key in _COLUMNS)
        embeddings = got.get("embeddings")
        return [
            IndexRecord(
                id_,
                uri_of(metadatas[row], uris[row]),
                dict(metadatas[row] or {}),
                None if embeddings is None else np.asarray(embeddings[row], np.float32),
                documents[row],
            )
            for row, id_ in enumerate(got["ids"])
        ]

    def pages(self, where: Where) -> Iterator[list[IndexRecord]]:
        """The records matching `where` (no vectors), `PAGE` at a time: Chroma refuses one
        get of about 100,000 records ("too many SQL variables"), and pages bound memory."""
        offset, page = 0, PAGE
        while True:
            # URIs too (at no extra cost): another tool's records may keep them nowhere else.
            got = self.records(where=where, limit=page, offset=offset)
            if got:
                yield got
            if len(got) < page:
                return
            offset += page

    def ids(self, where: Where) -> list[str]:
        """The ids of the records matching `where`, `IDS_PAGE` at a time.

        Without metadata Chroma answers with ids alone, in a fraction of the time, and has no
        trouble with large pages; each page costs more the further it starts (an offset is
        counted off), so they are large: 100,000 ids in 0.6 s, against 3.6 s in pages of 10,000.
        """
        found: list[str] = []
        while True:
            kwargs = {"where": dict(where), "include": [], "limit": IDS_PAGE, "offset": len(found)}
            page = self._call("get", kwargs)["ids"]
            found += page
            if len(page) < IDS_PAGE:
                return found

    def metadata(self, ids: Sequence[str]) -> dict[str, Mapping[str, Any]]:
        """id -> the stored metadata, for those of `ids` that exist."""
        # Which exist first: a get of ids alone costs a twentieth of one with metadata
        # (Chroma reads every metadata key), and new ids, the common case, need nothing more.
        existing = self.existing(ids)
        if not existing:
            return {}
        return {r.id: r.metadata for r in self.records(existing, texts=False)}

    def existing(self, ids: Sequence[str]) -> list[str]:
        """Those of `ids` that are stored, each once."""
        unique = list(dict.fromkeys(ids))
        return [
            id_
            for start in range(0, len(unique), PAGE)
            for id_ in self._call("get", {"ids": unique[start : start + PAGE], "include": []})[
                "ids"
            ]
        ]

    def query(
        self,
        vector: np.ndarray,
        k: int,
        where: Where | None = None,
        where_document: Where | None = None,
        *,
        vectors: bool = False,
    ) -> tuple[list[SearchHit], np.ndarray | None]:
        """The k records closest to `vector`, best first, and their vectors when asked.

        Unfiltered, a query must reach min(k, count) records: a short answer means the
        vector index lost records, and raises IndexDamagedError.
        """
        kwargs = {
            "query_embeddings": [vector],
            "n_results": k,
            "where": dict(where) if where else None,
            "where_document": dict(where_document) if where_document else None,
            "include": ["metadatas", "distances", *_COLUMNS[1:]]
            + (["embeddings"] if vectors else []),
        }
        if where or where_document:
            result = self._call("query", kwargs)  # a filter may match fewer: nothing to check
        else:
            result = full_query(
                lambda: self._call("query", kwargs), k, self.count, self.ref, self.collection.name
            )
        hits = hits_from_query(result, self.space)
        if not vectors or not hits:
            return hits, None
        return hits, np.asarray(result["embeddings"][0], dtype=np.float32)

    def count(self) -> int:
        return int(self._call("count", {}))

    # -- writing ----------------------------------------------------------------------------

    def write(
        self,
        new: Sequence[IndexRecord],
        changed: Sequence[IndexRecord],
        refreshed: Sequence[tuple[str, Metadata]],
        max_batch: int,
    ) -> None:
        """Store records in calls of at most `max_batch`, all under the lock.

        New ids use add (cheaper; a duplicate id from a racing writer is ignored by Chroma),
        changed ones upsert, refreshed ones update metadata only.
        """
        with self.lock:
            for rows, method in ((new, "add"), (changed, "upsert")):
                for start in range(0, len(rows), max_batch):
                    self._call(method, _columns(rows[start : start + max_batch]))
            for start in range(0, len(refreshed), max_batch):
                part = refreshed[start : start + max_batch]
                self._call(
                    "update", {"ids": [r[0] for r in part], "metadatas": [r[1] for r in part]}
                )

    def delete(self, ids: Sequence[str] | None = None, where: Where | None = None) -> None:
        self._call(
            "delete",
            {
                "ids": list(ids) if ids is not None else None,
                "where": dict(where) if where else None,
            },
        )


def _columns(rows: Sequence[IndexRecord]) -> dict[str, Any]:
    """Records as the column-wise arguments of Chroma's add and upsert."""
    docs = [r.document for r in rows]
    return {
        "ids": [r.id for r in rows],
        "embeddings": np.stack([np.asarray(r.embedding) for r in rows]),
        "metadatas": [r.metadata for r in rows],
        "uris": [r.uri for r in rows],  # Chroma accepts None
        "documents": docs if any(d is not None for d in docs) else None,
    }


def similarity(distance: float, space: str) -> float:
    """Cosine similarity from a Chroma distance between unit vectors.

    Chroma's cosine distance is `1 - cos` and its ip distance `1 - dot` (the cosine for unit
    vectors); its l2 is squared, `|a - b|^2 = 2 - 2 cos` for unit vectors.
    """
    if space == "l2":
        return 1.0 - float(distance) / 2.0
    if space in ("cosine", "ip"):
        return 1.0 - float(distance)
    raise ValueError(f"unknown Chroma space {space!r}; expected one of {SPACES}")


def hits_from_query(result: Mapping[str, Any], space: str = "cosine") -> list[SearchHit]:
    """Turn the first row of a Chroma query result into hits, scored as cosine similarity
    from the collection's distance `space` (see `similarity`)."""
    ids: list[str] = result["ids"][0]
    distances = result["distances"][0]
    metadatas, uris, documents = (_first_row(result, key, len(ids)) for key in _COLUMNS)
    return [
        SearchHit(id_, uri_of(meta, uri), similarity(dist, space), dict(meta or {}), doc)
        for id_, dist, meta, uri, doc in zip(
            ids, distances, metadatas, uris, documents, strict=True
        )
    ]


def _first_row(result: Mapping[str, Any], key: str, n: int) -> list[Any]:
    """The first row of an optional query result column; None per hit where it is missing."""
    rows = result.get(key)
    return _column(rows[0] if rows else None, n)


def _column(values: Sequence[Any] | None, n: int) -> list[Any]:
    """An optional result column; None for each record where it is missing."""
    return list(values) if values is not None else [None] * n
