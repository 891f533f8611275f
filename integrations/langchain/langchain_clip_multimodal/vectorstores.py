"""CLIPChroma: a LangChain `VectorStore` over `clip_multimodal.ImageIndex` (Chroma)."""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
from langchain_core.documents import Document
from langchain_core.embeddings import Embeddings
from typing_extensions import Self

from clip_multimodal.index import ImageIndex, SearchHit, per_input
from langchain_clip_multimodal._chroma_compat import ChromaCompat
from langchain_clip_multimodal._documents import TEXT, record_document
from langchain_clip_multimodal._setup import add_collection_metadata, no_extra, open_index
from langchain_clip_multimodal.embeddings import CLIPEmbeddings

if TYPE_CHECKING:
    from chromadb.api import ClientAPI
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


class CLIPChroma(ChromaCompat):
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
        embedding_function, index = open_index(
            collection_name,
            embedding_function,
            persist_directory,
            host,
            port,
            client,
            client_settings=client_settings,
            collection_metadata=collection_metadata,
            create_collection_if_not_exists=create_collection_if_not_exists,
            index=index,
        )
        self._embedding: Embeddings = embedding_function
        self._index = index
        self._deleted = False  # delete_collection() was called
        self._collection_metadata = dict(collection_metadata or {})
        self._relevance_score_fn = relevance_score_fn or cosine_relevance
        add_collection_metadata(index, self._collection_metadata)

    @property
    def embeddings(self) -> Embeddings:
        """The embedding function."""
        return self._embedding

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
        no_extra(kwargs, "add_texts")
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
        no_extra(kwargs, "similarity_search_by_vector")
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
        no_extra(kwargs, "similarity_search_by_vector_with_relevance_scores")
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
        no_extra(kwargs, "max_marginal_relevance_search")
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
        no_extra(extra, "similarity_search")
        vector = self._embedding.embed_query(query)
        return self._documents(self.index.search_by_vector(vector, k, where, where_document))

    def _search_image(
        self, uri: str, k: int, where: Mapping[str, Any] | None, extra: Mapping[str, Any]
    ) -> list[tuple[Document, float]]:
        where_document = extra.get("where_document")
        no_extra({n: v for n, v in extra.items() if n != "where_document"}, "search by image")
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
