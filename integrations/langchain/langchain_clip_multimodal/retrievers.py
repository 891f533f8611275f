"""CLIPImageRetriever: images from an `ImageIndex` for a text or image query.

TextImageRetriever: a question's text chunks and images, fused by reciprocal rank. Why not
`EnsembleRetriever`: in LangChain 1.x it lives in `langchain-classic`, a legacy package this
integration does not depend on (only `langchain-core`); it keys documents by `page_content`
unless told an `id_key` (two image Documents with the same description would merge); and it
drops each result's score and which retriever found it. TextImageRetriever is small: it calls
both retrievers (concurrently in async), fuses with the core's `reciprocal_rank_fusion` and
keeps the fused score and the origin in each Document's metadata.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from typing import Any, Literal

from langchain_core.callbacks import (
    AsyncCallbackManagerForRetrieverRun,
    CallbackManagerForRetrieverRun,
)
from langchain_core.documents import Document
from langchain_core.retrievers import BaseRetriever
from pydantic import ConfigDict, Field, model_validator

from clip_multimodal.access import AccessPolicy
from clip_multimodal.fusion import DEFAULT_RRF_C, reciprocal_rank_fusion
from clip_multimodal.images import is_image_query
from clip_multimodal.index import ImageIndex, SearchHit
from langchain_clip_multimodal._documents import TEXT, record_document

__all__ = ["CLIPImageRetriever", "TextImageRetriever"]


class CLIPImageRetriever(BaseRetriever):
    """Retrieves images from a `clip_multimodal.ImageIndex` by text or by image.

    Every query is a text by default: a query that an LLM or a user writes never makes the
    retriever read a file or fetch a URL. With `image_access` set, a query that is an existing
    file path, an http(s) URL or a data: URI is an image query, read only where the
    `AccessPolicy` allows (files under its roots, URLs on its hosts); others raise
    `AccessDeniedError`. Each `Document` has a short text description as its
    `page_content` (never base64) and carries `uri`, `score` (cosine similarity, higher is
    better) and the image's metadata. Turn them into vision-model input with
    `documents_to_image_blocks`.

    Setup:
        ```bash
        pip install langchain-clip-multimodal
        ```

    Instantiate:
        ```python
        from clip_multimodal import CLIPEncoder, ImageIndex
        from langchain_clip_multimodal import CLIPImageRetriever

        index = ImageIndex(CLIPEncoder(), collection="photos")
        index.index_folder("~/Pictures")
        retriever = CLIPImageRetriever(index=index, k=4)
        ```

    Usage:
        ```python
        retriever.invoke("a dog on a beach")
        queries = AccessPolicy(roots=["photos"])  # image queries: files under photos/ only
        CLIPImageRetriever(index=index, image_access=queries).invoke("photos/dog.jpg", k=2)
        retriever.invoke("a dog", where={"mime": "image/jpeg"}, score_threshold=0.2)
        ```

    Async:
        ```python
        await retriever.ainvoke("a dog on a beach")  # runs in a worker thread
        ```

    Attributes:
        index: the image index to search.
        k: how many images (per call: `invoke(query, k=...)`).
        where: a Chroma metadata filter (per call: `invoke(query, where=...)`).
        score_threshold: the lowest cosine similarity kept (per call too).
        image_access: where image queries may read (an `AccessPolicy`); None: every query
            is a text.
    """

    model_config = ConfigDict(arbitrary_types_allowed=True)

    index: ImageIndex
    k: int = Field(default=4, ge=1)
    where: dict[str, Any] | None = None
    score_threshold: float | None = None
    image_access: AccessPolicy | None = None

    def _get_relevant_documents(
        self,
        query: str,
        *,
        run_manager: CallbackManagerForRetrieverRun,
        k: int | None = None,
        where: Mapping[str, Any] | None = None,
        score_threshold: float | None = None,
    ) -> list[Document]:
        return self._retrieve(query, k, where, score_threshold)

    async def _aget_relevant_documents(
        self,
        query: str,
        *,
        run_manager: AsyncCallbackManagerForRetrieverRun,
        k: int | None = None,
        where: Mapping[str, Any] | None = None,
        score_threshold: float | None = None,
    ) -> list[Document]:
        return await asyncio.to_thread(self._retrieve, query, k, where, score_threshold)

    def _retrieve(
        self,
        query: str,
        k: int | None,
        where: Mapping[str, Any] | None,
        score_threshold: float | None,
    ) -> list[Document]:
        k = self.k if k is None else k
        where = self.where if where is None else where
        threshold = self.score_threshold if score_threshold is None else score_threshold
        query_type = self._query_type(query)
        hits = self.index.search(query, k, _images_only(where), query_type=query_type)
        return [_document(h) for h in hits if threshold is None or h.score >= threshold]

    def _query_type(self, query: str) -> Literal["text", "image"]:
        """ "image" where image queries are allowed and the query is one by the core's rule
        (`is_image_query`: it looks like a path or URL); the policy then decides the reach."""
        if self.image_access is None or not is_image_query(query):
            return "text"
        self.image_access.check(query)  # AccessDeniedError outside the policy
        return "image"


def _images_only(where: Mapping[str, Any] | None) -> dict[str, Any]:
    """Text records (CLIPChroma.add_texts) share the collection; an image retriever skips them.

    "Not text" rather than "image": collections other tools wrote (Chroma's native function,
    LlamaIndex's ChromaVectorStore) have no `modality` key, and Chroma's `$ne` keeps records
    without the key.
    """
    not_text = {"modality": {"$ne": TEXT}}
    return {"$and": [dict(where), not_text]} if where else not_text


def _document(hit: SearchHit) -> Document:
    return record_document(hit.id, hit.uri, hit.metadata, hit.document, extra={"score": hit.score})


class TextImageRetriever(BaseRetriever):
    """The top text chunks from any LangChain retriever and the top images from a
    `CLIPImageRetriever`, for one question, fused by weighted reciprocal rank.

    Each Document keeps its metadata and gains `retrieved_by` ("text" or "image") and
    `fusion_score` (the sum of `weight / (c + rank)` over the lists that found it). Image
    Documents from documents carry `source` and `page`; give them to a vision chat model with
    `documents_to_image_blocks`.

    Instantiate:
        ```python
        from langchain_clip_multimodal import CLIPImageRetriever, TextImageRetriever

        retriever = TextImageRetriever(
            text_retriever=text_store.as_retriever(search_kwargs={"k": 4}),  # any VectorStore
            image_retriever=CLIPImageRetriever(index=index, k=2),
            weights=(1.0, 1.0),
        )
        ```

    Usage:
        ```python
        docs = retriever.invoke("what does the chart on revenue show?")
        texts = [d for d in docs if d.metadata["retrieved_by"] == "text"]
        ```

    Attributes:
        text_retriever: any retriever of text chunks (`VectorStore.as_retriever()`, BM25...).
        image_retriever: the image retriever over an `ImageIndex`.
        weights: (text weight, image weight).
        c: the rank offset (60: higher ranks count relatively less).
        k: how many fused Documents to return; None returns every one found.
    """

    model_config = ConfigDict(arbitrary_types_allowed=True)

    text_retriever: BaseRetriever
    image_retriever: CLIPImageRetriever
    weights: tuple[float, float] = (1.0, 1.0)
    c: int = Field(default=DEFAULT_RRF_C, ge=0)
    k: int | None = Field(default=None, ge=1)

    @model_validator(mode="after")
    def _check_weights(self) -> TextImageRetriever:
        reciprocal_rank_fusion([[], []], self.weights, self.c)  # raises ValueError on bad ones
        return self

    def _get_relevant_documents(
        self, query: str, *, run_manager: CallbackManagerForRetrieverRun
    ) -> list[Document]:
        child = run_manager.get_child()
        texts = self.text_retriever.invoke(query, config={"callbacks": child})
        images = self.image_retriever.invoke(query, config={"callbacks": child})
        return self._fuse(texts, images)

    async def _aget_relevant_documents(
        self, query: str, *, run_manager: AsyncCallbackManagerForRetrieverRun
    ) -> list[Document]:
        child = run_manager.get_child()
        texts, images = await asyncio.gather(
            self.text_retriever.ainvoke(query, config={"callbacks": child}),
            self.image_retriever.ainvoke(query, config={"callbacks": child}),
        )
        return self._fuse(texts, images)

    def _fuse(self, texts: Sequence[Document], images: Sequence[Document]) -> list[Document]:
        found: dict[tuple[str, str], Document] = {}
        rankings: list[list[tuple[str, str]]] = []
        for origin, docs in (("text", texts), ("image", images)):
            keys = []
            for position, doc in enumerate(docs):
                # the id where the store gives one, else the content (with its origin)
                key = (origin, doc.id or f"{position}:{doc.page_content}")
                found.setdefault(key, doc)
                keys.append(key)
            rankings.append(keys)
        fused = reciprocal_rank_fusion(rankings, self.weights, self.c)
        out = [
            Document(
                page_content=found[key].page_content,
                metadata={**found[key].metadata, "retrieved_by": key[0], "fusion_score": score},
                id=found[key].id,
            )
            for key, score in fused
        ]
        return out[: self.k] if self.k is not None else out
