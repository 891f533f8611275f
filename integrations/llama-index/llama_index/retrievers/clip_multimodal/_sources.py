"""Where image hits come from, and how a hit becomes an ImageNode.

Three kinds of Chroma collection hold CLIP image vectors:
(a) clip-multimodal's `ImageIndex` (metadata `uri`, mime, width, ...; read through the index);
(b) Chroma's native embedding function (`uris` only: no documents, no metadata, any ids);
(c) LlamaIndex's `ChromaVectorStore` (metadata `_node_content`: the serialized node).
`ImageIndex` refuses to open (b) and (c) because they record no model, so those are read here
directly, read-only.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol
from urllib.parse import unquote, urlparse

import numpy as np
from llama_index.core.schema import ImageNode
from llama_index.core.vector_stores.utils import metadata_dict_to_node

from clip_multimodal.errors import IncompatibleIndexError

if TYPE_CHECKING:
    from chromadb.api.models.Collection import Collection

    from clip_multimodal.index import ImageIndex

__all__ = ["CollectionSource", "Hit", "ImageSource", "IndexSource", "hit_to_node"]

#: What clip-multimodal's ImageIndex records on its collections.
MODEL_ID_KEY = "clip_multimodal:model_id"
_NODE_CONTENT = "_node_content"


@dataclass(frozen=True)
class Hit:
    """One stored image near the query; score is cosine similarity."""

    id: str
    uri: str | None
    score: float
    metadata: Mapping[str, Any] = field(default_factory=dict)
    document: str | None = None


class ImageSource(Protocol):
    """Searches stored image vectors: the k nearest to a unit vector, best first."""

    name: str

    def search(self, vector: np.ndarray, k: int, where: dict[str, Any] | None) -> list[Hit]: ...


class IndexSource:
    """Hits from clip-multimodal's ImageIndex."""

    def __init__(self, index: ImageIndex) -> None:
        self.index = index
        self.name = index.name

    def search(self, vector: np.ndarray, k: int, where: dict[str, Any] | None) -> list[Hit]:
        hits = self.index.search_by_vector(vector, k, where)
        return [Hit(h.id, h.uri, h.score, dict(h.metadata)) for h in hits]


class CollectionSource:
    """Hits from any Chroma collection of CLIP image vectors, read directly (never written).

    Distances convert to cosine similarity by the collection's space: `1 - d` for cosine and
    ip, `1 - d / 2` for l2 (Chroma's l2 is squared), exact for unit vectors.
    """

    def __init__(self, collection: Collection, model_id: str, dim: int) -> None:
        self.collection = collection
        self.name = collection.name
        self.space = collection_space(collection)
        _check_model(collection, model_id, dim)

    def search(self, vector: np.ndarray, k: int, where: dict[str, Any] | None) -> list[Hit]:
        if k < 1:
            return []
        result = self.collection.query(
            query_embeddings=[np.asarray(vector, dtype=np.float32).tolist()],
            n_results=k,
            where=where or None,
            include=["metadatas", "distances", "uris", "documents"],
        )
        return self._hits(result)

    def _hits(self, result: Mapping[str, Any]) -> list[Hit]:
        ids: list[str] = result["ids"][0]
        none = [None] * len(ids)
        columns = [
            (result.get(key) or [none])[0] or none
            for key in ("distances", "metadatas", "uris", "documents")
        ]
        return [
            Hit(id_, uri or None, self._score(dist), dict(meta or {}), doc)
            for id_, dist, meta, uri, doc in zip(ids, *columns, strict=True)
        ]

    def _score(self, distance: float) -> float:
        d = float(distance)
        return 1.0 - d / 2.0 if self.space == "l2" else 1.0 - d


def collection_space(collection: Collection) -> str:
    """The collection's distance: its configuration, else legacy `hnsw:space`, else l2."""
    config: Mapping[str, Any] = collection.configuration or {}
    index_config = config.get("hnsw") or config.get("spann") or {}
    space = index_config.get("space") or (collection.metadata or {}).get("hnsw:space")
    return str(space or "l2")


def _check_model(collection: Collection, model_id: str, dim: int) -> None:
    """Refuse a collection recorded for another model, or whose vectors have another size."""
    recorded = (collection.metadata or {}).get(MODEL_ID_KEY)
    if recorded is not None and recorded != model_id:
        raise IncompatibleIndexError(
            f"collection {collection.name!r} was built with model {recorded}; you offered "
            f"{model_id}. Use the same model to read it."
        )
    sample = collection.get(limit=1, include=["embeddings"])
    embeddings = sample.get("embeddings")
    if embeddings is not None and len(embeddings) and len(embeddings[0]) != dim:
        raise IncompatibleIndexError(
            f"collection {collection.name!r} holds vectors of dim {len(embeddings[0])}; model "
            f"{model_id} makes dim {dim}. Read it with the model that wrote it."
        )


def hit_to_node(hit: Hit, collection: str) -> ImageNode:
    """An ImageNode for a hit: the stored node where LlamaIndex wrote one, else built from the URI.

    Raises:
        IncompatibleIndexError: the record is a LlamaIndex node that is not an image (the
            retriever was pointed at a text collection).
    """
    metadata = dict(hit.metadata)
    if _NODE_CONTENT in metadata:
        node = metadata_dict_to_node(metadata, text=hit.document)
        if not isinstance(node, ImageNode):
            raise IncompatibleIndexError(
                f"record {hit.id!r} of collection {collection!r} is a {type(node).__name__}, "
                "not an image; point the image retriever at the image collection"
            )
        return node
    local, url = _split_uri(hit.uri)
    mime = metadata.get("mime")
    return ImageNode(
        id_=hit.id,
        text=hit.document or "",
        image_path=local,
        image_url=url,
        image_mimetype=mime if isinstance(mime, str) else None,
        metadata=metadata,
    )


def _split_uri(uri: str | None) -> tuple[str | None, str | None]:
    """(image_path, image_url): http(s) and data: URIs are URLs, file:// and the rest paths."""
    if not uri:
        return None, None
    scheme = urlparse(uri).scheme.lower()
    if scheme in ("http", "https", "data"):
        return None, uri
    if scheme == "file":
        return unquote(urlparse(uri).path), None
    return uri, None
