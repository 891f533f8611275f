"""CLIPImageRetriever: images from an `ImageIndex` for a text or image query."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import Any

from langchain_core.callbacks import (
    AsyncCallbackManagerForRetrieverRun,
    CallbackManagerForRetrieverRun,
)
from langchain_core.documents import Document
from langchain_core.retrievers import BaseRetriever
from pydantic import ConfigDict, Field

from clip_multimodal.index import ImageIndex, SearchHit
from langchain_clip_multimodal._documents import TEXT, record_document

__all__ = ["CLIPImageRetriever"]


class CLIPImageRetriever(BaseRetriever):
    """Retrieves images from a `clip_multimodal.ImageIndex` by text or by image.

    A query is a text unless it is an existing file path, an http(s) URL or a data: URI;
    then it is an image query. Each `Document` has a short text description as its
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
        retriever.invoke("photos/dog.jpg", k=2)  # an image query, k per call
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
    """

    model_config = ConfigDict(arbitrary_types_allowed=True)

    index: ImageIndex
    k: int = Field(default=4, ge=1)
    where: dict[str, Any] | None = None
    score_threshold: float | None = None

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
        hits = self.index.search(query, k, _images_only(where))
        return [_document(h) for h in hits if threshold is None or h.score >= threshold]


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
