"""The benchmark's ClipEmbedding reproduction computes what ClipEmbedding computes.

The ratio `python -m benchmarks.llamaindex_bench` reports is only fair if both sides embed
the same way: same vectors up to scale, per item, unnormalized, on the event loop.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from llama_index.core.embeddings import MultiModalEmbedding
from llama_index.embeddings.clip_multimodal import CLIPMultiModalEmbedding
from llama_index_clip_contracts import runs_off_loop

from benchmarks.llamaindex_bench import ClipStyleEmbedding


@pytest.fixture(scope="module")
def exact(demo_encoder: Any) -> Any:
    """The demo model at fp32, as ClipEmbedding runs it (`auto` may pick bf16 on this CPU)."""
    from clip_multimodal import CLIPEncoder

    return CLIPEncoder(demo_encoder.model_name, device="cpu", precision="fp32")


@pytest.fixture
def both(exact: Any) -> tuple[CLIPMultiModalEmbedding, ClipStyleEmbedding]:
    ours = CLIPMultiModalEmbedding(encoder=exact)
    theirs = ClipStyleEmbedding(exact.model, exact.preprocess, exact.tokenizer)
    return ours, theirs


def _unit(v: list[float]) -> np.ndarray:
    a = np.asarray(v, dtype=np.float64)
    return a / np.linalg.norm(a)


def test_same_directions(both: Any, demo_images_dir: Path) -> None:
    ours, theirs = both
    paths = [str(p) for p in sorted(demo_images_dir.rglob("*.png"))[:6]]
    for a, b in zip(
        ours.get_image_embedding_batch(paths), theirs.get_image_embedding_batch(paths), strict=True
    ):
        np.testing.assert_allclose(_unit(a), _unit(b), atol=1e-5)
    texts = ["a handwritten seven", "a small red circle"]
    for a, b in zip(
        ours.get_text_embedding_batch(texts), theirs.get_text_embedding_batch(texts), strict=True
    ):
        np.testing.assert_allclose(_unit(a), _unit(b), atol=1e-5)


def test_incumbent_is_unnormalized_and_per_item(both: Any, demo_images_dir: Path) -> None:
    _, theirs = both
    path = str(next(demo_images_dir.rglob("*.png")))
    norm = math.sqrt(sum(x * x for x in theirs.get_image_embedding(path)))
    assert not math.isclose(norm, 1.0, abs_tol=1e-3)
    assert theirs.embed_batch_size == 10
    # No batch hook: LlamaIndex's base class loops over `_get_image_embedding`, one by one.
    assert ClipStyleEmbedding._get_image_embeddings is MultiModalEmbedding._get_image_embeddings


async def test_incumbent_async_blocks_the_loop(both: Any) -> None:
    _, theirs = both
    _, off_loop = await runs_off_loop(lambda: theirs.aget_query_embedding("a cat"))
    assert not off_loop
