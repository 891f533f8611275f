"""CLIPEmbeddings as a drop-in for OpenCLIPEmbeddings in `langchain_chroma.Chroma`.

What works there is tested to work; where langchain-chroma itself is broken, the test pins
its actual behaviour and shows CLIPChroma doing it right.
"""

from __future__ import annotations

import base64
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from langchain_chroma import Chroma
from langchain_clip_multimodal import CLIPChroma


def _b64(path: Path) -> str:
    return base64.b64encode(path.read_bytes()).decode()


@pytest.fixture
def paths(demo_images_dir: Path) -> list[Path]:
    return sorted(demo_images_dir.rglob("*.png"))


@pytest.fixture
def lc_chroma(chroma_client: Any, clip_embeddings: Any, paths: list[Path]) -> Iterator[Chroma]:
    name = f"lc-chroma-{uuid.uuid4().hex[:12]}"
    store = Chroma(name, clip_embeddings, client=chroma_client)
    ids = store.add_images([str(p) for p in paths], [{"uri": str(p)} for p in paths])
    assert len(ids) == len(paths)
    yield store
    chroma_client.delete_collection(name)


def test_add_images_and_text_search_work(lc_chroma: Chroma) -> None:
    docs = lc_chroma.similarity_search("a large yellow star", k=3)
    assert Path(docs[0].metadata["uri"]).name.startswith("yellow-star-large-")


def test_search_by_image_works(lc_chroma: Chroma, demo_image: Any) -> None:
    probe = demo_image("shapes", "yellow-star-large")
    docs = lc_chroma.similarity_search_by_image(str(probe), k=2)
    assert docs[0].metadata["uri"] == str(probe)


def test_langchain_chroma_stores_whole_images_as_base64(lc_chroma: Chroma, demo_image: Any) -> None:
    probe = demo_image("digits", "two")
    docs = lc_chroma.similarity_search_by_image(str(probe), k=1)
    assert docs[0].page_content == _b64(probe)  # the bloat CLIPChroma avoids


def test_langchain_chroma_relevance_by_image_is_broken(
    lc_chroma: Chroma, clip_embeddings: Any, demo_image: Any, chroma_client: Any
) -> None:
    probe = str(demo_image("digits", "two"))
    # It passes embed_image's list of vectors as one vector: Chroma rejects the nesting.
    with pytest.raises(ValueError, match="Expected embeddings to be a list of floats"):
        lc_chroma.similarity_search_by_image_with_relevance_score(probe, k=2)
    # Unnested, the "relevance" it returns is Chroma's distance: the image itself scores ~0,
    # the lowest, where relevance should be highest.
    vector = clip_embeddings.embed_image([probe])[0]
    pairs = lc_chroma.similarity_search_by_vector_with_relevance_scores(vector, k=3)
    assert pairs[0][0].metadata["uri"] == probe
    assert pairs[0][1] == pytest.approx(0.0, abs=1e-3)
    assert pairs[0][1] < pairs[1][1]

    ours = CLIPChroma(f"lc-ours-{uuid.uuid4().hex[:12]}", clip_embeddings, client=chroma_client)
    ours.add_images([probe, str(demo_image("digits", "seven"))])
    scored = ours.similarity_search_by_image_with_relevance_score(probe, k=2)
    assert scored[0][0].metadata["uri"] == probe
    assert scored[0][1] == pytest.approx(1.0, abs=1e-3)
    assert scored[0][1] > scored[1][1]
