"""CLIPChroma: a LangChain `VectorStore` over `clip_multimodal.ImageIndex` (Chroma)."""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
from langchain_core.documents import Document
from langchain_core.embeddings import Embeddings
from langchain_core.vectorstores import VectorStore
from typing_extensions import Self

from clip_multimodal.index import ImageIndex, SearchHit, per_input
from langchain_clip_multimodal._documents import TEXT, record_document
from langchain_clip_multimodal._encoder import encoder_for
from langchain_clip_multimodal.embeddings import CLIPEmbeddings

if TYPE_CHECKING:
    from chromadb.api import ClientAPI
    from chromadb.api.models.Collection import Collection
    from chromadb.config import Settings

__all__ = ["CLIPChroma", "cosine_relevance"]

logger = logging.getLogger(__name__)

DEFAULT_K = 4
_DEFAULT_COLLECTION = "langchain"


def cosine_relevance(similarity: float) -> float:
    """The default relevance score: cosine similarity in [-1, 1] mapped to [0, 1].

    `(1 + similarity) / 2`: 1 for the same direction, 0.5 for unrelated (orthogonal)
    vectors, 0 for opposite ones. Higher is more relevant, as LangChain expects.
    """
    return min(1.0, max(0.0, (1.0 + similarity) / 2.0))


class CLIPChroma(VectorStore):
    """A Chroma vector store for images and texts that stores URIs, not base64.

    Built on `clip_multimodal.ImageIndex`, with `langchain_chroma.Chroma`'s constructor
    names and methods (`get`, `delete_collection`, `reset_collection`, `update_documents`,
    `similarity_search_with_vectors`, `_collection`, `_client`, ...). Images are stored as
    their path or URL plus metadata (mime, width, height, size, sha256, modality="image" and
    your keys); texts as their text (modality="text").

    Scores differ from `langchain_chroma.Chroma` (see the README's list of differences):

    - `similarity_search_with_score` returns the cosine similarity in [-1, 1], higher is
      better, where `Chroma` returns a distance (lower is better): a threshold written for
      `Chroma` must be turned around;
    - the relevance methods (and `similarity_search_by_vector_with_relevance_scores`, a
      distance in `Chroma`) return `relevance_score_fn(similarity)` in [0, 1], by default
      `cosine_relevance`: `(1 + similarity) / 2`.

    Texts can use any LangChain `Embeddings`; images need `CLIPEmbeddings`, whose text
    queries then find images.

    Setup:
        ```bash
        pip install langchain-clip-multimodal
        ```

    Instantiate:
        ```python
        from langchain_clip_multimodal import CLIPChroma, CLIPEmbeddings

        store = CLIPChroma(
            collection_name="photos",
            embedding_function=CLIPEmbeddings(),
            persist_directory="./chroma",  # or client=..., or host=/port= for a server
        )
        ```

    Add images:
        ```python
        ids = store.add_images(["photos/cat.jpg", "photos/dog.jpg"], [{"album": "pets"}, None])
        ```

    Search:
        ```python
        store.similarity_search("a cat on a sofa", k=2, filter={"album": "pets"})
        store.similarity_search_by_image("photos/cat.jpg", k=2)
        store.similarity_search_by_image_with_relevance_score("photos/cat.jpg", k=2)
        store.max_marginal_relevance_search("a cat", k=2, fetch_k=10)
        ```

    Async:
        ```python
        await store.asimilarity_search("a cat", k=2)  # runs in a worker thread
        ```

    Args:
        collection_name: the Chroma collection.
        embedding_function: the embeddings (required): `CLIPEmbeddings` for images and texts,
            any `Embeddings` for texts only.
        persist_directory: where an embedded Chroma keeps its files.
        host: a Chroma server's host.
        port: the server's port.
        client: an existing Chroma client.
        relevance_score_fn: maps a cosine similarity to a relevance in [0, 1]
            (default `cosine_relevance`).
        client_settings: Chroma `Settings` for the client this store makes (with
            persist_directory, host/port, or alone).
        collection_metadata: metadata recorded on the collection (keys already set stay);
            the distance is always cosine.
        create_collection_if_not_exists: False: the collection must exist already.
        index: an existing `ImageIndex` (e.g. built with the CLI) to use instead of the
            connection arguments; `embedding_function` then defaults to its encoder.

    With none of persist_directory, host/port, client or index, the store is in memory, as
    `langchain_chroma.Chroma` is.

    Raises:
        clip_multimodal.IncompatibleIndexError: the collection was built with another model.
        clip_multimodal.IndexNotFoundError: `create_collection_if_not_exists=False` and
            there is no such collection.
    """

    def __init__(
        self,
        collection_name: str = _DEFAULT_COLLECTION,
        embedding_function: Embeddings | None = None,
        persist_directory: str | None = None,
        host: str | None = None,
        port: int | None = None,
        client: ClientAPI | None = None,
        relevance_score_fn: Callable[[float], float] | None = None,
        *,
        client_settings: Settings | None = None,
        collection_metadata: Mapping[str, Any] | None = None,
        create_collection_if_not_exists: bool = True,
        index: ImageIndex | None = None,
    ) -> None:
        _check_space(collection_metadata or {})
        if index is not None:
            given = (persist_directory, host, port, client, client_settings, collection_metadata)
            if any(arg is not None for arg in given):
                raise ValueError("pass index, or the connection arguments: not both")
            embedding_function = embedding_function or CLIPEmbeddings(encoder=index.encoder)
            _check_same_model(embedding_function, index)
        elif embedding_function is None:
            raise ValueError(
                "CLIPChroma needs an embedding_function: CLIPEmbeddings(...) for images and "
                "texts, or any LangChain Embeddings for texts only"
            )
        else:
            if client is None:
                client = _own_client(client_settings, persist_directory, host, port)
                if client is not None:  # made here from the location: the core takes the client
                    persist_directory, host, port = None, None, None
            encoder = encoder_for(embedding_function)
            if not create_collection_if_not_exists:
                # Opening read-only checks that it exists and creates nothing; then open it.
                found = ImageIndex.open_read_only(
                    encoder, collection_name, persist_directory, client=client, host=host, port=port
                )
                client, persist_directory, host, port = found.client, None, None, None
            index = ImageIndex(
                encoder, collection_name, persist_directory, client=client, host=host, port=port
            )
        self._embedding: Embeddings = embedding_function
        self._index = index
        self._deleted = False  # delete_collection() was called
        self._collection_metadata = dict(collection_metadata or {})
        self._relevance_score_fn = relevance_score_fn or cosine_relevance
        _add_collection_metadata(index, self._collection_metadata)

    @property
    def embeddings(self) -> Embeddings:
        """The embedding function."""
        return self._embedding

    @property
    def index(self) -> ImageIndex:
        """The underlying `ImageIndex` (full reports, folder sync, raw hits).

        Raises:
            ValueError: the collection was deleted with `delete_collection`.
        """
        if self._deleted:
            raise ValueError(
                "Chroma collection not initialized: it was deleted with delete_collection(); "
                "use reset_collection() to create it again, empty"
            )
        return self._index

    @property
    def _collection(self) -> Collection:
        """The Chroma collection (as `langchain_chroma.Chroma._collection`)."""
        return self.index.collection

    @property
    def _client(self) -> ClientAPI:
        """The Chroma client (as `langchain_chroma.Chroma._client`)."""
        client = self.index.client
        if client is None:  # an index opened from a Collection object
            raise ValueError("this store was built on a Chroma Collection, without its client")
        return client

    def _select_relevance_score_fn(self) -> Callable[[float], float]:
        return self._relevance_score_fn

    # -- adding -------------------------------------------------------------------------

    def add_texts(
        self,
        texts: Iterable[str],
        metadatas: list[dict[str, Any]] | None = None,
        *,
        ids: list[str] | None = None,
        **kwargs: Any,
    ) -> list[str]:
        """Embed texts and store them; a record with the same id is replaced.

        Returns:
            The ids, given or generated (a uuid4 where an id is missing).
        """
        _no_extra(kwargs, "add_texts")
        texts = list(texts)
        n = len(texts)
        metas = per_input("metadatas", metadatas, n, "text")
        id_list = [i or str(uuid.uuid4()) for i in per_input("ids", ids, n, "text")]
        if n:
            vectors = self._embedding.embed_documents(texts)
            self.index.add_embeddings(
                vectors, id_list, metadatas=metas, documents=texts, modality=TEXT, replace=True
            )
        return id_list

    def add_images(
        self,
        uris: list[str],
        metadatas: list[dict[str, Any]] | None = None,
        ids: list[str] | None = None,
    ) -> list[str]:
        """Embed images (paths or URLs) in batches and store their URIs and metadata.

        An image already stored with the same content is not embedded again. An image that
        cannot be read is logged and skipped, and the rest are stored.

        Args:
            uris: paths or http(s) URLs of the images.
            metadatas: your metadata per image (str, int, float or bool values).
            ids: record ids; by default the content's SHA-256.

        Returns:
            The ids of the stored images, in input order (skipped ones left out).
        """
        self._clip_embeddings("add_images")
        report = self.index.add(uris, metadatas, ids)
        for failed in report.failed:
            logger.warning("image not added: %s: %s", failed.source, failed.reason)
        return [i for i in report.ids if i is not None]

    # -- text queries -------------------------------------------------------------------

    def similarity_search(
        self,
        query: str,
        k: int = DEFAULT_K,
        filter: Mapping[str, Any] | None = None,
        where_document: Mapping[str, Any] | None = None,
        **kwargs: Any,
    ) -> list[Document]:
        """The k records closest to a text query, best first.

        Args:
            query: the text.
            k: how many.
            filter: a Chroma metadata filter, e.g. `{"album": "pets"}`.
            where_document: a Chroma document filter, e.g. `{"$contains": "cat"}`.
        """
        hits = self._search(query, k, filter, where_document, kwargs)
        return [doc for doc, _ in hits]

    def similarity_search_with_score(
        self,
        query: str,
        k: int = DEFAULT_K,
        filter: Mapping[str, Any] | None = None,
        where_document: Mapping[str, Any] | None = None,
        **kwargs: Any,
    ) -> list[tuple[Document, float]]:
        """Like `similarity_search`, with each record's cosine similarity (higher is better)."""
        return self._search(query, k, filter, where_document, kwargs)

    def similarity_search_by_vector(
        self,
        embedding: list[float],
        k: int = DEFAULT_K,
        filter: Mapping[str, Any] | None = None,
        where_document: Mapping[str, Any] | None = None,
        **kwargs: Any,
    ) -> list[Document]:
        """The k records closest to a vector from this store's model, best first."""
        _no_extra(kwargs, "similarity_search_by_vector")
        hits = self.index.search_by_vector(embedding, k, filter, where_document)
        return [doc for doc, _ in self._documents(hits)]

    def similarity_search_by_vector_with_relevance_scores(
        self,
        embedding: list[float],
        k: int = DEFAULT_K,
        filter: Mapping[str, Any] | None = None,
        where_document: Mapping[str, Any] | None = None,
        **kwargs: Any,
    ) -> list[tuple[Document, float]]:
        """Like `similarity_search_by_vector`, with relevance in [0, 1] (higher is better;
        `langchain_chroma.Chroma` returns a distance here, despite the name)."""
        _no_extra(kwargs, "similarity_search_by_vector_with_relevance_scores")
        hits = self.index.search_by_vector(embedding, k, filter, where_document)
        relevance = self._relevance_score_fn
        return [(doc, relevance(score)) for doc, score in self._documents(hits)]

    def similarity_search_with_vectors(
        self,
        query: str,
        k: int = DEFAULT_K,
        filter: Mapping[str, Any] | None = None,
        where_document: Mapping[str, Any] | None = None,
        **kwargs: Any,
    ) -> list[tuple[Document, np.ndarray]]:
        """Like `similarity_search`, with each record's stored (L2-normalized) vector."""
        docs = [doc for doc, _ in self._search(query, k, filter, where_document, kwargs)]
        records = self.index.get([str(doc.id) for doc in docs], include_embeddings=True)
        vectors = {r.id: r.embedding for r in records if r.embedding is not None}
        return [(doc, vectors[str(doc.id)]) for doc in docs if str(doc.id) in vectors]

    def max_marginal_relevance_search(
        self,
        query: str,
        k: int = DEFAULT_K,
        fetch_k: int = 20,
        lambda_mult: float = 0.5,
        filter: Mapping[str, Any] | None = None,
        where_document: Mapping[str, Any] | None = None,
        **kwargs: Any,
    ) -> list[Document]:
        """Records relevant to the text and diverse among themselves (MMR over fetch_k)."""
        vector = self._embedding.embed_query(query)
        return self.max_marginal_relevance_search_by_vector(
            vector, k, fetch_k, lambda_mult, filter, where_document, **kwargs
        )

    def max_marginal_relevance_search_by_vector(
        self,
        embedding: list[float],
        k: int = DEFAULT_K,
        fetch_k: int = 20,
        lambda_mult: float = 0.5,
        filter: Mapping[str, Any] | None = None,
        where_document: Mapping[str, Any] | None = None,
        **kwargs: Any,
    ) -> list[Document]:
        """Like `max_marginal_relevance_search`, for a vector (the core's MMR)."""
        _no_extra(kwargs, "max_marginal_relevance_search")
        hits = self.index.max_marginal_relevance_by_vector(
            embedding, k, fetch_k, lambda_mult, filter, where_document
        )
        return [doc for doc, _ in self._documents(hits)]

    # -- image queries ------------------------------------------------------------------

    def similarity_search_by_image(
        self,
        uri: str,
        k: int = DEFAULT_K,
        filter: Mapping[str, Any] | None = None,
        **kwargs: Any,
    ) -> list[Document]:
        """The k records closest to an image (a path, URL or data: URI), best first."""
        return [doc for doc, _ in self._search_image(uri, k, filter, kwargs)]

    def similarity_search_by_image_with_relevance_score(
        self,
        uri: str,
        k: int = DEFAULT_K,
        filter: Mapping[str, Any] | None = None,
        **kwargs: Any,
    ) -> list[tuple[Document, float]]:
        """Like `similarity_search_by_image`, with relevance in [0, 1] (higher is better)."""
        relevance = self._relevance_score_fn
        return [(doc, relevance(s)) for doc, s in self._search_image(uri, k, filter, kwargs)]

    # -- records ------------------------------------------------------------------------

    def get_by_ids(self, ids: Sequence[str], /) -> list[Document]:
        """The records with these ids, in the order asked; missing ids are left out."""
        records = self.index.get(list(ids))
        return [record_document(r.id, r.uri, r.metadata, r.document) for r in records]

    def get(
        self,
        ids: str | list[str] | None = None,
        where: Mapping[str, Any] | None = None,
        limit: int | None = None,
        offset: int | None = None,
        where_document: Mapping[str, Any] | None = None,
        include: list[str] | None = None,
    ) -> dict[str, Any]:
        """Chroma's raw records (as `langchain_chroma.Chroma.get`): a dict of `ids`,
        `documents`, `metadatas` and, when `include` asks, `embeddings` or `uris`.

        Metadata is as stored: records carry `modality` and images their file keys.
        """
        query: dict[str, Any] = {
            "ids": ids,
            "where": dict(where) if where else None,
            "limit": limit,
            "offset": offset,
            "where_document": dict(where_document) if where_document else None,
            "include": include or ["metadatas", "documents"],
        }
        return dict(self.index.collection.get(**query))

    def update_document(self, document_id: str, document: Document) -> None:
        """Re-embed and replace one record (as `langchain_chroma.Chroma.update_document`)."""
        self.update_documents([document_id], [document])

    def update_documents(self, ids: list[str], documents: list[Document]) -> None:
        """Re-embed and replace records by id; an id not stored yet is added."""
        metadatas = [dict(d.metadata) for d in documents]
        self.add_texts([d.page_content for d in documents], metadatas, ids=list(ids))

    def delete_collection(self) -> None:
        """Delete the whole collection; the store then refuses calls until `reset_collection`."""
        self._client.delete_collection(self.index.name)
        self._deleted = True

    def reset_collection(self) -> None:
        """Delete the collection (if it is still there) and create it again, empty."""
        if not self._deleted:
            self.delete_collection()
        old = self._index
        if old.client is None:  # an index opened from a Collection object
            raise ValueError("this store was built on a Chroma Collection, without its client")
        self._index = ImageIndex(old.encoder, old.name, client=old.client)
        self._deleted = False
        _add_collection_metadata(self._index, self._collection_metadata)

    def delete(self, ids: list[str] | None = None, **kwargs: Any) -> bool | None:
        """Delete records by id, or by metadata with `filter=...` (or `where=...`, as
        `langchain_chroma.Chroma` takes it); missing ids are ignored.

        Raises:
            ValueError: neither ids nor filter given (this store never deletes everything).
        """
        where = kwargs.pop("filter", None) or kwargs.pop("where", None)
        _no_extra(kwargs, "delete")
        if ids is not None and not ids and where is None:
            return True
        self.index.delete(ids, where)
        return True

    # -- constructors -------------------------------------------------------------------

    @classmethod
    def from_texts(
        cls,
        texts: list[str],
        embedding: Embeddings,
        metadatas: list[dict[str, Any]] | None = None,
        *,
        ids: list[str] | None = None,
        **kwargs: Any,
    ) -> Self:
        """A store (constructor arguments as keywords) holding these texts."""
        store = cls(embedding_function=embedding, **kwargs)
        store.add_texts(texts, metadatas, ids=ids)
        return store

    @classmethod
    def from_images(
        cls,
        uris: list[str],
        embedding: CLIPEmbeddings,
        metadatas: list[dict[str, Any]] | None = None,
        *,
        ids: list[str] | None = None,
        **kwargs: Any,
    ) -> Self:
        """A store (constructor arguments as keywords) holding these images."""
        store = cls(embedding_function=embedding, **kwargs)
        store.add_images(uris, metadatas, ids)
        return store

    # -- helpers ------------------------------------------------------------------------

    def _search(
        self,
        query: str,
        k: int,
        where: Mapping[str, Any] | None,
        where_document: Mapping[str, Any] | None,
        extra: Mapping[str, Any],
    ) -> list[tuple[Document, float]]:
        _no_extra(extra, "similarity_search")
        vector = self._embedding.embed_query(query)
        return self._documents(self.index.search_by_vector(vector, k, where, where_document))

    def _search_image(
        self, uri: str, k: int, where: Mapping[str, Any] | None, extra: Mapping[str, Any]
    ) -> list[tuple[Document, float]]:
        where_document = extra.get("where_document")
        _no_extra({n: v for n, v in extra.items() if n != "where_document"}, "search by image")
        self._clip_embeddings("search by image")
        hits = self.index.search(uri, k, where, where_document, query_type="image")
        return self._documents(hits)

    def _documents(self, hits: Sequence[SearchHit]) -> list[tuple[Document, float]]:
        return [(record_document(h.id, h.uri, h.metadata, h.document), h.score) for h in hits]

    def _clip_embeddings(self, what: str) -> None:
        if not isinstance(self._embedding, CLIPEmbeddings):
            raise TypeError(
                f"{what} needs embedding_function=CLIPEmbeddings(...); this store uses "
                f"{type(self._embedding).__name__}, which embeds texts only"
            )


def _own_client(
    settings: Settings | None, path: str | None, host: str | None, port: int | None
) -> ClientAPI | None:
    """The client `langchain_chroma.Chroma` makes for `client_settings` or for no location;
    None when the core makes it from the path or host/port.

    The in-memory client takes Chroma's default settings, as `chromadb.EphemeralClient()`
    does: the in-memory system is one per process, and another client there with other
    settings is refused.
    """
    import chromadb

    if settings is None:
        return chromadb.EphemeralClient() if (path, host, port) == (None, None, None) else None
    if path is not None:
        return chromadb.PersistentClient(path=path, settings=settings)
    if host is not None or port is not None:
        return chromadb.HttpClient(host=host or "localhost", port=port or 8000, settings=settings)
    return chromadb.Client(settings)


def _check_space(metadata: Mapping[str, Any]) -> None:
    """Refuse a distance space other than cosine, which CLIP scores need, before anything
    is created."""
    space = metadata.get("hnsw:space", "cosine")
    if space != "cosine":
        raise ValueError(
            f"collection_metadata asks for the {space!r} distance; CLIPChroma collections use "
            "'cosine' (its scores are cosine similarity). Leave hnsw:space out."
        )


def _add_collection_metadata(index: ImageIndex, metadata: Mapping[str, Any]) -> None:
    """Record the caller's collection metadata (keys already set stay as they are)."""
    current = dict(index.collection.metadata or {})
    missing = {k: v for k, v in metadata.items() if k not in current and k != "hnsw:space"}
    if missing:
        index.collection.modify(metadata={**current, **missing})


def _check_same_model(embeddings: Embeddings, index: ImageIndex) -> None:
    model_id = encoder_for(embeddings).model_id
    if model_id != index.encoder.model_id:
        raise ValueError(
            f"embedding_function uses model {model_id}, but the index holds vectors of "
            f"{index.encoder.model_id}; leave embedding_function out to use the index's model"
        )


def _no_extra(kwargs: Mapping[str, Any], method: str) -> None:
    if kwargs:
        raise TypeError(
            f"CLIPChroma.{method} got unexpected arguments {sorted(kwargs)}; it takes filter "
            "(a Chroma metadata filter) and where_document"
        )
