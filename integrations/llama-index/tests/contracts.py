"""Contract tests for LlamaIndex multimodal components, in the manner of langchain-tests.

LlamaIndex publishes no conformance suite, so these classes state what any
`MultiModalEmbedding` and any `MultiModalRetriever` must do. Subclass one, provide its
fixtures, and pytest runs every test against your component:

    class TestMyEmbedding(MultiModalEmbeddingContract):
        @pytest.fixture
        def embed_model(self):
            return MyEmbedding(...)

Nothing here is specific to clip-multimodal; LlamaIndex's own retriever runs against the
retriever contract too.
"""

from __future__ import annotations

import asyncio
import math
from io import BytesIO
from pathlib import Path
from typing import Any

import pytest
from llama_index.core.base.base_multi_modal_retriever import MultiModalRetriever
from llama_index.core.embeddings import MultiModalEmbedding
from llama_index.core.schema import ImageNode, NodeWithScore, QueryBundle
from PIL import Image

__all__ = ["MultiModalEmbeddingContract", "MultiModalRetrieverContract", "runs_off_loop"]

TOLERANCE = 1e-4  # batched and single forwards differ by float rounding only


def _close(a: list[float], b: list[float], tol: float = TOLERANCE) -> bool:
    return len(a) == len(b) and all(
        math.isclose(x, y, abs_tol=tol) for x, y in zip(a, b, strict=True)
    )


def _norm(v: list[float]) -> float:
    return math.sqrt(sum(x * x for x in v))


async def runs_off_loop(make: Any) -> tuple[Any, bool]:
    """Await `make()` and tell whether another task ran before it finished.

    A coroutine that does its work on the event loop never suspends, so a task scheduled
    beside it cannot run until it returns.
    """
    order: list[str] = []

    async def probe() -> None:
        order.append("probe")

    task = asyncio.create_task(probe())
    result = await make()
    order.append("done")
    await task
    return result, order[0] == "probe"


class MultiModalEmbeddingContract:
    """What a LlamaIndex `MultiModalEmbedding` must do.

    Fixtures to provide: `embed_model`. Override `contract_images` to use other images (at
    least three that differ).
    """

    @pytest.fixture
    def embed_model(self) -> MultiModalEmbedding:
        raise NotImplementedError("provide an embed_model fixture")

    @pytest.fixture
    def contract_images(self, tmp_path: Path) -> list[str]:
        """Three different images as file paths."""
        paths = []
        for i, colour in enumerate(["red", "green", "blue"]):
            image = Image.new("RGB", (64, 48), colour)
            image.paste("white", (8 * i, 8, 8 * i + 16, 40))
            path = tmp_path / f"contract-{colour}.png"
            image.save(path)
            paths.append(str(path))
        return paths

    # -- shapes and types ---------------------------------------------------------------

    def test_is_multimodal_embedding(self, embed_model: MultiModalEmbedding) -> None:
        assert isinstance(embed_model, MultiModalEmbedding)
        assert isinstance(embed_model.class_name(), str) and embed_model.class_name()

    def test_text_embedding_is_python_floats(self, embed_model: MultiModalEmbedding) -> None:
        vector = embed_model.get_text_embedding("a photo of a dog")
        assert isinstance(vector, list) and len(vector) > 0
        assert all(type(x) is float for x in vector)

    def test_query_and_text_share_dim(self, embed_model: MultiModalEmbedding) -> None:
        query = embed_model.get_query_embedding("a dog")
        text = embed_model.get_text_embedding("a dog")
        assert len(query) == len(text)
        assert all(type(x) is float for x in query)

    def test_image_embedding_shares_text_dim(
        self, embed_model: MultiModalEmbedding, contract_images: list[str]
    ) -> None:
        image = embed_model.get_image_embedding(contract_images[0])
        assert len(image) == len(embed_model.get_text_embedding("x"))
        assert all(type(x) is float for x in image)

    @pytest.mark.parametrize("n", [1, 2, 5])
    def test_text_batch_sizes(self, embed_model: MultiModalEmbedding, n: int) -> None:
        texts = [f"caption number {i}" for i in range(n)]
        vectors = embed_model.get_text_embedding_batch(texts)
        assert len(vectors) == n
        assert len({len(v) for v in vectors}) == 1

    def test_image_batch_size(
        self, embed_model: MultiModalEmbedding, contract_images: list[str]
    ) -> None:
        vectors = embed_model.get_image_embedding_batch(contract_images)
        assert len(vectors) == len(contract_images)

    def test_empty_batches(self, embed_model: MultiModalEmbedding) -> None:
        assert embed_model.get_text_embedding_batch([]) == []
        assert embed_model.get_image_embedding_batch([]) == []

    # -- values -------------------------------------------------------------------------

    def test_normalized(self, embed_model: MultiModalEmbedding, contract_images: list[str]) -> None:
        """Unit vectors, so that cosine, inner product and l2 stores all rank alike."""
        vectors = [
            embed_model.get_text_embedding("a red square"),
            embed_model.get_query_embedding("a red square"),
            embed_model.get_image_embedding(contract_images[0]),
        ]
        for vector in vectors:
            assert math.isclose(_norm(vector), 1.0, abs_tol=1e-3)

    def test_text_batch_equals_singles(self, embed_model: MultiModalEmbedding) -> None:
        texts = ["a cat", "a much longer caption about a dog running on a beach", "x"]
        batch = embed_model.get_text_embedding_batch(texts)
        for text, vector in zip(texts, batch, strict=True):
            assert _close(vector, embed_model.get_text_embedding(text))

    def test_image_batch_equals_singles(
        self, embed_model: MultiModalEmbedding, contract_images: list[str]
    ) -> None:
        batch = embed_model.get_image_embedding_batch(contract_images)
        for image, vector in zip(contract_images, batch, strict=True):
            assert _close(vector, embed_model.get_image_embedding(image))

    def test_batch_keeps_order(
        self, embed_model: MultiModalEmbedding, contract_images: list[str]
    ) -> None:
        forward = embed_model.get_image_embedding_batch(contract_images)
        backward = embed_model.get_image_embedding_batch(contract_images[::-1])
        for a, b in zip(forward, backward[::-1], strict=True):
            assert _close(a, b)
        assert not _close(forward[0], forward[1])  # different images, different vectors

    def test_deterministic(self, embed_model: MultiModalEmbedding) -> None:
        assert _close(
            embed_model.get_text_embedding("same"), embed_model.get_text_embedding("same")
        )

    def test_image_types(
        self, embed_model: MultiModalEmbedding, contract_images: list[str]
    ) -> None:
        """Every ImageType gives the same vector: a path string and a BytesIO of its bytes."""
        path = contract_images[1]
        expected = embed_model.get_image_embedding(path)
        buffer = BytesIO(Path(path).read_bytes())
        assert _close(embed_model.get_image_embedding(buffer), expected)

    # -- async --------------------------------------------------------------------------

    async def test_async_matches_sync(
        self, embed_model: MultiModalEmbedding, contract_images: list[str]
    ) -> None:
        texts = ["a cat", "a dog"]
        assert _close(
            await embed_model.aget_query_embedding("a cat"),
            embed_model.get_query_embedding("a cat"),
        )
        assert _close(
            await embed_model.aget_text_embedding("a cat"), embed_model.get_text_embedding("a cat")
        )
        for a, b in zip(
            await embed_model.aget_text_embedding_batch(texts),
            embed_model.get_text_embedding_batch(texts),
            strict=True,
        ):
            assert _close(a, b)
        assert _close(
            await embed_model.aget_image_embedding(contract_images[0]),
            embed_model.get_image_embedding(contract_images[0]),
        )
        for a, b in zip(
            await embed_model.aget_image_embedding_batch(contract_images),
            embed_model.get_image_embedding_batch(contract_images),
            strict=True,
        ):
            assert _close(a, b)

    async def test_async_empty_batches(self, embed_model: MultiModalEmbedding) -> None:
        assert await embed_model.aget_text_embedding_batch([]) == []
        assert await embed_model.aget_image_embedding_batch([]) == []

    @pytest.mark.parametrize("method", ["query", "text", "text_batch", "image", "image_batch"])
    async def test_async_runs_off_the_event_loop(
        self, embed_model: MultiModalEmbedding, contract_images: list[str], method: str
    ) -> None:
        calls = {
            "query": lambda: embed_model.aget_query_embedding("a cat"),
            "text": lambda: embed_model.aget_text_embedding("a cat"),
            "text_batch": lambda: embed_model.aget_text_embedding_batch(["a", "b"]),
            "image": lambda: embed_model.aget_image_embedding(contract_images[0]),
            "image_batch": lambda: embed_model.aget_image_embedding_batch(contract_images),
        }
        result, off_loop = await runs_off_loop(calls[method])
        assert result
        assert off_loop, f"aget {method} blocked the event loop until it finished"


class MultiModalRetrieverContract:
    """What a LlamaIndex `MultiModalRetriever` over stored images must do.

    Fixtures to provide:
        retriever: the retriever, holding more images than `expected_k`.
        expected_k: how many images one query returns.
        text_query: a text that matches some stored images.
        image_query: the path of an image that is stored: it must come back first.
        filtered: (a retriever with metadata filters, a predicate every returned node's
            metadata must satisfy). The filter must exclude some of the images the unfiltered
            retriever returns for `text_query`.
    """

    @pytest.fixture
    def retriever(self) -> MultiModalRetriever:
        raise NotImplementedError("provide a retriever fixture")

    @pytest.fixture
    def expected_k(self) -> int:
        raise NotImplementedError("provide an expected_k fixture")

    @pytest.fixture
    def text_query(self) -> str:
        raise NotImplementedError("provide a text_query fixture")

    @pytest.fixture
    def image_query(self) -> str:
        raise NotImplementedError("provide an image_query fixture")

    @pytest.fixture
    def filtered(self) -> tuple[MultiModalRetriever, Any]:
        raise NotImplementedError("provide a filtered fixture")

    @staticmethod
    def _check_image_hits(hits: list[NodeWithScore], k: int) -> None:
        assert len(hits) == k
        for hit in hits:
            assert isinstance(hit, NodeWithScore)
            assert isinstance(hit.node, ImageNode)
            node = hit.node
            assert node.image_path or node.image_url or node.image, "a hit must locate its image"
            assert isinstance(hit.score, float)
        scores = [h.score for h in hits]
        assert scores == sorted(scores, reverse=True), "hits must come best first"
        assert len({h.node.node_id for h in hits}) == len(hits), "no duplicate hits"

    @staticmethod
    def _key(hits: list[NodeWithScore]) -> list[tuple[str, float]]:
        return [(h.node.node_id, round(float(h.score or 0.0), 4)) for h in hits]

    def test_is_multimodal_retriever(self, retriever: MultiModalRetriever) -> None:
        assert isinstance(retriever, MultiModalRetriever)

    def test_text_to_image(
        self, retriever: MultiModalRetriever, text_query: str, expected_k: int
    ) -> None:
        self._check_image_hits(retriever.text_to_image_retrieve(text_query), expected_k)

    def test_text_to_image_query_bundle(
        self, retriever: MultiModalRetriever, text_query: str
    ) -> None:
        by_str = retriever.text_to_image_retrieve(text_query)
        by_bundle = retriever.text_to_image_retrieve(QueryBundle(query_str=text_query))
        assert self._key(by_str) == self._key(by_bundle)

    def test_image_to_image_finds_itself(
        self, retriever: MultiModalRetriever, image_query: str, expected_k: int
    ) -> None:
        hits = retriever.image_to_image_retrieve(image_query)
        self._check_image_hits(hits, expected_k)
        top = hits[0].node
        assert isinstance(top, ImageNode)
        assert Path(str(top.image_path)).resolve() == Path(image_query).resolve()

    def test_image_query_bundle(self, retriever: MultiModalRetriever, image_query: str) -> None:
        by_str = retriever.image_to_image_retrieve(image_query)
        by_bundle = retriever.image_to_image_retrieve(
            QueryBundle(query_str="", image_path=image_query)
        )
        assert self._key(by_str) == self._key(by_bundle)

    def test_retrieve_includes_the_images(
        self, retriever: MultiModalRetriever, text_query: str
    ) -> None:
        images = self._key(retriever.text_to_image_retrieve(text_query))
        combined = retriever.retrieve(text_query)
        image_part = [h for h in combined if isinstance(h.node, ImageNode)]
        assert self._key(image_part) == images

    def test_text_retrieve_returns_text_nodes(
        self, retriever: MultiModalRetriever, text_query: str
    ) -> None:
        for hit in retriever.text_retrieve(text_query):
            assert isinstance(hit, NodeWithScore)
            assert not isinstance(hit.node, ImageNode)

    def test_filters_apply(
        self, filtered: tuple[MultiModalRetriever, Any], text_query: str
    ) -> None:
        filtered_retriever, predicate = filtered
        hits = filtered_retriever.text_to_image_retrieve(text_query)
        assert hits, "the filter must leave some images"
        for hit in hits:
            assert predicate(hit.node.metadata), f"{hit.node.metadata} escaped the filter"

    def test_filters_change_the_result(
        self,
        retriever: MultiModalRetriever,
        filtered: tuple[MultiModalRetriever, Any],
        text_query: str,
    ) -> None:
        _, predicate = filtered
        unfiltered = retriever.text_to_image_retrieve(text_query)
        assert not all(predicate(h.node.metadata) for h in unfiltered), (
            "pick a filter that excludes some of the unfiltered hits"
        )

    async def test_async_parity(
        self, retriever: MultiModalRetriever, text_query: str, image_query: str
    ) -> None:
        pairs = [
            (retriever.text_to_image_retrieve, retriever.atext_to_image_retrieve, text_query),
            (retriever.image_to_image_retrieve, retriever.aimage_to_image_retrieve, image_query),
            (retriever.text_retrieve, retriever.atext_retrieve, text_query),
            (retriever.retrieve, retriever.aretrieve, text_query),
        ]
        for sync, async_, query in pairs:
            assert self._key(await async_(query)) == self._key(sync(query))

    async def test_async_filters(
        self, filtered: tuple[MultiModalRetriever, Any], text_query: str
    ) -> None:
        filtered_retriever, predicate = filtered
        hits = await filtered_retriever.atext_to_image_retrieve(text_query)
        assert hits and all(predicate(h.node.metadata) for h in hits)
