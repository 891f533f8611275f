"""CLIPImageRetriever on the demo model: the standard suite and the right images."""

from __future__ import annotations

import base64
from pathlib import Path
from typing import Any

import pytest
from langchain_clip_multimodal import CLIPImageRetriever, documents_to_image_blocks
from langchain_tests.integration_tests import RetrieversIntegrationTests

from clip_multimodal.access import AccessPolicy


class TestCLIPImageRetrieverStandard(RetrieversIntegrationTests):
    @pytest.fixture(autouse=True)
    def _index(self, lc_demo_index: Any) -> None:
        # The suite reads the constructor params from a property; it gets the index here.
        self.index = lc_demo_index

    @property
    def retriever_constructor(self) -> type[CLIPImageRetriever]:
        return CLIPImageRetriever

    @property
    def retriever_constructor_params(self) -> dict[str, Any]:
        return {"index": self.index, "k": 2}

    @property
    def retriever_query_example(self) -> str:
        return "a handwritten seven"


def test_text_queries_find_the_described_images(lc_demo_index: Any) -> None:
    retriever = CLIPImageRetriever(index=lc_demo_index, k=3)
    for query, stem in [
        ("a large blue cross", "blue-cross-large-"),
        ("a silhouette of a zebra", "zebra-"),
    ]:
        docs = retriever.invoke(query)
        assert Path(docs[0].metadata["uri"]).name.startswith(stem), [d.page_content for d in docs]
        assert docs[0].metadata["score"] >= docs[-1].metadata["score"]
        assert docs[0].page_content.startswith("image: ") and len(docs[0].page_content) < 120


def _image_queries(probe: Path) -> AccessPolicy:
    """Image queries allowed from the demo images' folder only."""
    return AccessPolicy(roots=[probe.parent.parent])


def test_an_image_path_finds_the_image_itself(lc_demo_index: Any, demo_image: Any) -> None:
    probe = str(demo_image("animals", "giraffe"))
    retriever = CLIPImageRetriever(index=lc_demo_index, image_access=_image_queries(Path(probe)))
    docs = retriever.invoke(probe, k=2)
    assert docs[0].metadata["uri"] == probe
    assert docs[0].metadata["score"] == pytest.approx(1.0, abs=1e-3)
    assert docs[0].metadata["width"] == 64 and docs[0].metadata["mime"] == "image/png"


def test_a_data_uri_is_an_image_query(lc_demo_index: Any, demo_image: Any) -> None:
    probe = demo_image("digits", "seven")
    uri = "data:image/png;base64," + base64.b64encode(probe.read_bytes()).decode()
    retriever = CLIPImageRetriever(index=lc_demo_index, k=1, image_access=_image_queries(probe))
    assert retriever.invoke(uri)[0].metadata["uri"] == str(probe)
    # By default it is words like any other query (too long ones): no image is decoded.
    with pytest.warns(UserWarning, match="truncated"):
        text = CLIPImageRetriever(index=lc_demo_index, k=1).invoke(uri)
    assert text[0].metadata["score"] < 0.9


def test_threshold_keeps_only_close_matches(lc_demo_index: Any, demo_image: Any) -> None:
    probe = str(demo_image("shapes", "purple-cross-small"))
    retriever = CLIPImageRetriever(
        index=lc_demo_index, k=10, score_threshold=0.999, image_access=_image_queries(Path(probe))
    )
    docs = retriever.invoke(probe)
    assert [d.metadata["uri"] for d in docs] == [probe]


def test_retrieved_images_become_vision_blocks(lc_demo_index: Any) -> None:
    docs = CLIPImageRetriever(index=lc_demo_index, k=2).invoke("a silhouette of a zebra")
    blocks = documents_to_image_blocks(docs, max_side=32)
    assert [b["type"] for b in blocks] == ["image", "image"]
    assert all(base64.b64decode(b["base64"])[:3] == b"\xff\xd8\xff" for b in blocks)  # JPEG


def test_text_records_beside_images_are_not_retrieved_and_captions_are(
    demo_encoder: Any, demo_image: Any, tmp_path: Any
) -> None:
    """CLIPChroma keeps texts and images in one collection; the image retriever skips texts."""
    from langchain_clip_multimodal import CLIPChroma, CLIPEmbeddings

    store = CLIPChroma(
        "mixed", CLIPEmbeddings(encoder=demo_encoder), persist_directory=str(tmp_path)
    )
    store.add_texts(["a handwritten seven", "a handwritten seven, again"])
    seven = str(demo_image("digits", "seven"))
    store.index.add([seven], documents=["my favourite seven"])
    docs = CLIPImageRetriever(index=store.index, k=3).invoke("a handwritten seven")
    assert [d.metadata["uri"] for d in docs] == [seven]
    assert docs[0].page_content.endswith(": my favourite seven")
    assert docs[0].metadata["modality"] == "image"
