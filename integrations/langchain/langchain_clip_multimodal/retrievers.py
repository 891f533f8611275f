"""CLIPImageRetriever: images from an `ImageIndex` for a text or image query."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import Any, Literal

from langchain_core.callbacks import (
    AsyncCallbackManagerForRetrieverRun,
    CallbackManagerForRetrieverRun,
)
from langchain_core.documents import Document
from langchain_core.retrievers import BaseRetriever
from pydantic import ConfigDict, Field

from clip_multimodal.access import AccessPolicy
from clip_multimodal.images import is_image_query
from clip_multimodal.index import ImageIndex, SearchHit
from langchain_clip_multimodal._documents import TEXT, record_document

__all__ = ["CLIPImageRetriever"]


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
