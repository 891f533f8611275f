"""The reading half of `ImageIndex`: search by text, image or vector, MMR, get and count."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from clip_multimodal.index._records import IndexRecord, SearchHit
from clip_multimodal.index._search import QueryType, embed_query, mmr_select, unit_vectors

if TYPE_CHECKING:
    from clip_multimodal.index._chroma import LockedCollection
    from clip_multimodal.types import Encoder, ImageInput

__all__ = ["IndexReader"]

Where = Mapping[str, Any]


class IndexReader:
    """What every index can do, read-only or not: embed a query, search by it or by a
    vector, pick diverse hits (MMR), get records by id and count them. Scores are cosine
    similarity, converted from the collection's distance space by the store.
    `ImageIndex` adds opening, writing and syncing.
    """

    encoder: Encoder
    _store: LockedCollection

    # -- searching ----------------------------------------------------------------------

    def embed_query(self, query: str | ImageInput, query_type: QueryType = "auto") -> np.ndarray:
        """The query's vector: a text, or an image (see `search` for how `auto` decides)."""
        return embed_query(self.encoder, query, query_type)

    def search(
        self,
        query: str | ImageInput,
        k: int = 4,
        where: Where | None = None,
        where_document: Where | None = None,
        *,
        query_type: QueryType = "auto",
    ) -> list[SearchHit]:
        """The k images closest to a text or an image, best first.

        Args:
            query: a text, or an image. With `query_type="auto"` a str that looks like a
                path or URL is an image, which must load (`images.is_image_query` states the
                rule: a URL or data: URI; a str starting with / \\ ./ ../ ~ or a drive;
                ending with an image extension; one word holding / or \\; an existing file);
                any other str is a text. Bytes, Path, PIL images and arrays are images.
            k: how many hits.
            where: a Chroma metadata filter, e.g. `{"mime": "image/png"}`.
            where_document: a Chroma document filter, e.g. `{"$contains": "cat"}`.
            query_type: "auto", or force "text" (say, to search for the words "AC/DC") or
                "image" (say, for base64 image data).

        Returns:
            SearchHits; `score` is cosine similarity (from Chroma's distance, by the
            collection's space).

        Raises:
            ImageLoadError: an image query, or a str read as one, cannot be loaded.
        """
        return self.search_by_vector(self.embed_query(query, query_type), k, where, where_document)

    def search_by_vector(
        self,
        vector: np.ndarray | Sequence[float],
        k: int = 4,
        where: Where | None = None,
        where_document: Where | None = None,
    ) -> list[SearchHit]:
        """The k records closest to a vector from this index's model, best first."""
        if k < 1:
            return []
        query = self._check_vectors([vector], 1)[0]
        return self._store.query(query, k, where, where_document)[0]

    def max_marginal_relevance(
        self,
        query: str | ImageInput,
        k: int = 4,
        fetch_k: int = 20,
        lambda_mult: float = 0.5,
        where: Where | None = None,
        where_document: Where | None = None,
        *,
        query_type: QueryType = "auto",
    ) -> list[SearchHit]:
        """Hits that are relevant and diverse: maximal marginal relevance over `fetch_k`.

        `lambda_mult` is 1 for pure relevance, 0 for pure diversity. Scores stay the
        cosine similarity to the query.
        """
        vector = self.embed_query(query, query_type)
        return self.max_marginal_relevance_by_vector(
            vector, k, fetch_k, lambda_mult, where, where_document
        )

    def max_marginal_relevance_by_vector(
        self,
        vector: np.ndarray | Sequence[float],
        k: int = 4,
        fetch_k: int = 20,
        lambda_mult: float = 0.5,
        where: Where | None = None,
        where_document: Where | None = None,
    ) -> list[SearchHit]:
        """Like `max_marginal_relevance`, for a vector."""
        if not 0.0 <= lambda_mult <= 1.0:
            raise ValueError(f"lambda_mult must be in [0, 1], got {lambda_mult}")
        if k < 1:
            return []
        query = self._check_vectors([vector], 1)[0]
        hits, candidates = self._store.query(
            query, max(k, fetch_k), where, where_document, vectors=True
        )
        if candidates is None:
            return []
        return [hits[i] for i in mmr_select(query, candidates, k, lambda_mult)]

    # -- records ------------------------------------------------------------------------

    def get(self, ids: Sequence[str], *, include_embeddings: bool = False) -> list[IndexRecord]:
        """The stored records of these ids, in the order asked (missing ids are left out)."""
        if isinstance(ids, str):
            ids = [ids]
        if not ids:
            return []
        found = {r.id: r for r in self._store.records(ids, vectors=include_embeddings)}
        return [found[i] for i in ids if i in found]

    def count(self) -> int:
        """How many records the collection holds."""
        return self._store.count()

    # -- helpers ------------------------------------------------------------------------

    def _check_vectors(self, vectors: Any, n: int) -> np.ndarray:
        return unit_vectors(vectors, n, self.encoder)
