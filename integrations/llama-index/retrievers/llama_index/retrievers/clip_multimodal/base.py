"""CLIPImageRetriever: LlamaIndex's MultiModalRetriever over a Chroma collection of CLIP images."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any

import numpy as np
from llama_index.core.base.base_multi_modal_retriever import MultiModalRetriever
from llama_index.core.base.base_retriever import BaseRetriever
from llama_index.core.callbacks.base import CallbackManager
from llama_index.core.constants import DEFAULT_SIMILARITY_TOP_K
from llama_index.core.schema import NodeWithScore, QueryBundle, QueryType
from llama_index.core.vector_stores.types import MetadataFilters
from llama_index.embeddings.clip_multimodal.base import (
    CLIPMultiModalEmbedding,
    ImageLike,
    to_image_input,
)
from llama_index.retrievers.clip_multimodal._nodes import (
    check_holds_images,
    hit_to_node,
    images_only,
)
from llama_index.retrievers.clip_multimodal.filters import to_chroma_where

from clip_multimodal.access import AccessPolicy
from clip_multimodal.index import ImageIndex

if TYPE_CHECKING:
    from chromadb.api.models.Collection import Collection

    from clip_multimodal.types import Encoder

__all__ = ["CLIPImageRetriever"]


class CLIPImageRetriever(MultiModalRetriever):
    """Retrieves images by text or by image from a Chroma collection of CLIP vectors.

    Every method of LlamaIndex's `MultiModalRetriever` works, sync and async; the async ones
    run the model and the Chroma query in a worker thread. Hits come back as
    `NodeWithScore(ImageNode)` with `image_path` (local files) or `image_url` (http), the
    record's metadata, and `score` = cosine similarity, best first. `filters` apply to the
    image search itself, as a Chroma `where`. Image retrieval returns images only: text
    records in the same collection (LangChain `CLIPChroma.add_texts`, LlamaIndex text nodes)
    are left out of it; give a `text_retriever` to retrieve texts.

    An image query given as a path or URL (a string, `QueryBundle.image_path`, an `ImageNode`'s
    path or URL) is read only where `image_access` allows: by default nowhere, so a query an
    LLM or a user writes never reads a file or fetches a URL. Images in memory (bytes, PIL,
    base64, data: URIs) always work.

    It reads collections written by (a) clip-multimodal's `ImageIndex` (pass `index`), and,
    read-only through `ImageIndex.open_read_only`, by (b) Chroma's native embedding function
    (`uris`, no documents) or (c) LlamaIndex's `ChromaVectorStore` (pass `collection` and
    `embed_model`, or use `from_collection`). Scores are cosine similarity whatever the
    collection's distance space.

    Instantiate:
        .. code-block:: python

            from clip_multimodal import CLIPEncoder, ImageIndex
            from llama_index.retrievers.clip_multimodal import CLIPImageRetriever

            index = ImageIndex(CLIPEncoder(), collection="photos", path="./chroma")
            retriever = CLIPImageRetriever(index, image_similarity_top_k=5)
            by_path = CLIPImageRetriever(index, image_access=AccessPolicy(roots=["queries"]))

    Usage:
        .. code-block:: python

            retriever.text_to_image_retrieve("a dog on a beach")
            retriever.image_to_image_retrieve(Path("query.jpg").read_bytes())
            by_path.image_to_image_retrieve("queries/query.jpg")
            await retriever.atext_to_image_retrieve("a dog on a beach")

    Args:
        index: an `ImageIndex` to search.
        collection: instead of `index`, any Chroma collection of CLIP image vectors.
        embed_model: with `collection`, the model that wrote its vectors (a
            `CLIPMultiModalEmbedding` or a clip-multimodal `Encoder`).
        image_similarity_top_k: how many images a query returns.
        filters: metadata filters for the image search (EQ, NE, GT, GTE, LT, LTE, IN, NIN;
            AND, OR, NOT; nested).
        text_retriever: an optional retriever for text nodes; `text_retrieve` and
            `retrieve` use it. Without one, `text_retrieve` returns nothing.
        image_access: where image queries by path or URL may read (an `AccessPolicy` with
            roots and a URL allowlist); None: nowhere (`AccessDeniedError`).
        callback_manager: LlamaIndex callbacks.

    Raises:
        IncompatibleIndexError: the collection was written by another model (or holds
            vectors of another dimension), or holds text records and no image.
        ValueError: both or neither of `index` and `collection`; `collection` without
            `embed_model`.
    """

    def __init__(
        self,
        index: ImageIndex | None = None,
        *,
        collection: Collection | None = None,
        embed_model: CLIPMultiModalEmbedding | Encoder | None = None,
        image_similarity_top_k: int = DEFAULT_SIMILARITY_TOP_K,
        filters: MetadataFilters | None = None,
        text_retriever: BaseRetriever | None = None,
        callback_manager: CallbackManager | None = None,
        verbose: bool = False,
        image_access: AccessPolicy | None = None,
    ) -> None:
        if (index is None) == (collection is None):
            raise ValueError("pass an ImageIndex as index, or a Chroma collection: one of them")
        if image_similarity_top_k < 1:
            raise ValueError(
                f"image_similarity_top_k must be at least 1, not {image_similarity_top_k}"
            )
        self._encoder = _pick_encoder(index, embed_model)
        self._index: ImageIndex
        if index is not None:
            self._index = index
        elif collection is not None:
            self._index = ImageIndex.open_read_only(self._encoder, collection)
            check_holds_images(collection)
        self.image_similarity_top_k = image_similarity_top_k
        to_chroma_where(filters)  # fail fast on an unsupported operator
        self.filters = filters
        self._text_retriever = text_retriever
        self.image_access = image_access
        super().__init__(callback_manager=callback_manager, verbose=verbose)

    @classmethod
    def from_collection(
        cls,
        collection: Collection,
        embed_model: CLIPMultiModalEmbedding | Encoder,
        **kwargs: Any,
    ) -> CLIPImageRetriever:
        """A retriever over any Chroma collection of CLIP image vectors, read-only.

        For collections written by Chroma's native embedding function or by
        `ChromaVectorStore`: opened with `ImageIndex.open_read_only`, never written.
        """
        return cls(collection=collection, embed_model=embed_model, **kwargs)

    @property
    def encoder(self) -> Encoder:
        """The model that embeds queries."""
        return self._encoder

    @property
    def index(self) -> ImageIndex:
        """The index searched: the one given, or the collection opened read-only."""
        return self._index

    # -- text -> text -------------------------------------------------------------------

    def text_retrieve(self, str_or_query_bundle: QueryType) -> list[NodeWithScore]:
        """Text nodes from `text_retriever` (none without one)."""
        if self._text_retriever is None:
            return []
        return self._text_retriever.retrieve(_bundle(str_or_query_bundle))

    async def atext_retrieve(self, str_or_query_bundle: QueryType) -> list[NodeWithScore]:
        if self._text_retriever is None:
            return []
        return await self._text_retriever.aretrieve(_bundle(str_or_query_bundle))

    # -- text -> image ------------------------------------------------------------------

    def text_to_image_retrieve(self, str_or_query_bundle: QueryType) -> list[NodeWithScore]:
        """Images matching a text."""
        return self._text_to_image_retrieve(_bundle(str_or_query_bundle))

    async def atext_to_image_retrieve(self, str_or_query_bundle: QueryType) -> list[NodeWithScore]:
        return await self._atext_to_image_retrieve(_bundle(str_or_query_bundle))

    def _text_to_image_retrieve(self, query_bundle: QueryBundle) -> list[NodeWithScore]:
        texts = list(query_bundle.embedding_strs) or [query_bundle.query_str]
        vectors = self._encoder.embed_texts(texts)
        return self._search(vectors.mean(axis=0))  # several strings: their mean, as LlamaIndex

    async def _atext_to_image_retrieve(self, query_bundle: QueryBundle) -> list[NodeWithScore]:
        return await asyncio.to_thread(self._text_to_image_retrieve, query_bundle)

    # -- image -> image -----------------------------------------------------------------

    def image_to_image_retrieve(
        self, str_or_query_bundle: QueryType | ImageLike
    ) -> list[NodeWithScore]:
        """Images like a query image: a path or URL string, a QueryBundle with `image_path`,
        or the image itself (bytes, BytesIO, PIL image, ImageNode)."""
        return self._image_search(_query_image(str_or_query_bundle))

    async def aimage_to_image_retrieve(
        self, str_or_query_bundle: QueryType | ImageLike
    ) -> list[NodeWithScore]:
        image = _query_image(str_or_query_bundle)
        return await asyncio.to_thread(self._image_search, image)

    def _image_to_image_retrieve(self, query_bundle: QueryBundle) -> list[NodeWithScore]:
        return self._image_search(_query_image(query_bundle))

    async def _aimage_to_image_retrieve(self, query_bundle: QueryBundle) -> list[NodeWithScore]:
        return await self.aimage_to_image_retrieve(query_bundle)

    def _image_search(self, image: ImageLike) -> list[NodeWithScore]:
        source = to_image_input(image)
        # The empty policy lets images in memory through and refuses every path and URL.
        (self.image_access or AccessPolicy()).check(source)
        return self._search(self._encoder.embed_images([source])[0])

    # -- retrieve: text nodes, then images ----------------------------------------------

    def _retrieve(self, query_bundle: QueryBundle) -> list[NodeWithScore]:
        return self.text_retrieve(query_bundle) + self._text_to_image_retrieve(query_bundle)

    async def _aretrieve(self, query_bundle: QueryBundle) -> list[NodeWithScore]:
        texts, images = await asyncio.gather(
            self.atext_retrieve(query_bundle), self._atext_to_image_retrieve(query_bundle)
        )
        return texts + images

    # -- helpers ------------------------------------------------------------------------

    def _search(self, vector: np.ndarray) -> list[NodeWithScore]:
        # The core normalizes the vector; filters are read per call, so changing them works.
        where = images_only(to_chroma_where(self.filters))
        hits = self._index.search_by_vector(vector, self.image_similarity_top_k, where)
        name = self._index.name
        return [NodeWithScore(node=hit_to_node(hit, name), score=hit.score) for hit in hits]


def _pick_encoder(
    index: ImageIndex | None, embed_model: CLIPMultiModalEmbedding | Encoder | None
) -> Encoder:
    if embed_model is None:
        if index is None:
            raise ValueError(
                "reading a Chroma collection needs embed_model: the model that wrote it"
            )
        return index.encoder
    encoder = (
        embed_model.encoder if isinstance(embed_model, CLIPMultiModalEmbedding) else embed_model
    )
    if index is not None and encoder.model_id != index.encoder.model_id:
        raise ValueError(
            f"embed_model is {encoder.model_id} but the index was built with "
            f"{index.encoder.model_id}; leave embed_model out to use the index's model"
        )
    return encoder


def _bundle(query: QueryType) -> QueryBundle:
    return QueryBundle(query_str=query) if isinstance(query, str) else query


def _query_image(query: QueryType | ImageLike) -> ImageLike:
    """The query image: a string is a path or URL; a QueryBundle gives its `image_path`."""
    if not isinstance(query, QueryBundle):
        return query
    if query.image_path:
        return query.image_path
    raise ValueError(
        "image_to_image_retrieve needs an image: pass a path or URL string, "
        "QueryBundle(query_str='', image_path=...), or the image itself (bytes, PIL, ImageNode)"
    )
