"""TextImageFusionRetriever: any LlamaIndex retriever's text nodes and our images, fused.

LlamaIndex's own `QueryFusionRetriever` generates query variations with an LLM by default
and its reciprocal-rank mode takes no weights; this one makes no LLM call, weighs the two
lists, and keeps each node's origin in its metadata. The fusion is the core's
`reciprocal_rank_fusion`, the same as the LangChain adapter's.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

from llama_index.core.base.base_retriever import BaseRetriever
from llama_index.core.schema import NodeWithScore, QueryBundle
from llama_index.retrievers.clip_multimodal.base import CLIPImageRetriever

from clip_multimodal.fusion import DEFAULT_RRF_C, reciprocal_rank_fusion

__all__ = ["TextImageFusionRetriever"]


class TextImageFusionRetriever(BaseRetriever):
    """The top text nodes of any LlamaIndex retriever and the top images of a
    `CLIPImageRetriever` for one question, fused by weighted reciprocal rank.

    Each node's score becomes its fused score (the sum of `weight / (c + rank)` over the
    lists that found it) and its metadata gains `retrieved_by` ("text" or "image"). Image
    nodes from documents carry `source`, `page`, `file_name`, `page_label` and their
    `ref_doc_id` is the document's path.

    Example:
        >>> retriever = TextImageFusionRetriever(
        ...     text_index.as_retriever(similarity_top_k=4),
        ...     CLIPImageRetriever(index=image_index, image_similarity_top_k=2),
        ...     weights=(1.0, 1.0),
        ... )
        >>> nodes = retriever.retrieve("what does the revenue chart show?")

    Args:
        text_retriever: any LlamaIndex retriever of text nodes.
        image_retriever: the image retriever (its text-to-image search is used).
        weights: (text weight, image weight).
        c: the rank offset (60: higher ranks count relatively less).
        top_k: how many fused nodes to return; None returns every one found.

    Raises:
        ValueError: a negative weight, no positive one, or c < 0.
    """

    def __init__(
        self,
        text_retriever: BaseRetriever,
        image_retriever: CLIPImageRetriever,
        weights: tuple[float, float] = (1.0, 1.0),
        c: int = DEFAULT_RRF_C,
        top_k: int | None = None,
    ) -> None:
        reciprocal_rank_fusion([[], []], weights, c)  # raises ValueError on bad ones
        super().__init__()
        self._text = text_retriever
        self._images = image_retriever
        self._weights = weights
        self._c = c
        self._top_k = top_k

    def _retrieve(self, query_bundle: QueryBundle) -> list[NodeWithScore]:
        texts = self._text.retrieve(query_bundle)
        images = self._images.text_to_image_retrieve(query_bundle)
        return self._fuse(texts, images)

    async def _aretrieve(self, query_bundle: QueryBundle) -> list[NodeWithScore]:
        texts, images = await asyncio.gather(
            self._text.aretrieve(query_bundle),
            self._images.atext_to_image_retrieve(query_bundle),
        )
        return self._fuse(texts, images)

    def _fuse(
        self, texts: Sequence[NodeWithScore], images: Sequence[NodeWithScore]
    ) -> list[NodeWithScore]:
        found: dict[tuple[str, str], NodeWithScore] = {}
        rankings: list[list[tuple[str, str]]] = []
        for origin, nodes in (("text", texts), ("image", images)):
            keys = [(origin, n.node.node_id) for n in nodes]
            for key, node in zip(keys, nodes, strict=True):
                found.setdefault(key, node)
            rankings.append(keys)
        fused = []
        for key, score in reciprocal_rank_fusion(rankings, self._weights, self._c):
            copy = found[key].node.model_copy()
            copy.metadata = {**copy.metadata, "retrieved_by": key[0]}
            fused.append(NodeWithScore(node=copy, score=score))
        return fused[: self._top_k] if self._top_k is not None else fused
