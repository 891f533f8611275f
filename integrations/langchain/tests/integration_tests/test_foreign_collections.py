"""The image retriever and the agent tool on collections other tools wrote (opened read-only).

Chroma's native embedding function (ids and uris only) and LlamaIndex's `ChromaVectorStore`
(the node as metadata) record no `modality` key; their images must still be found.
"""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

import pytest
from langchain_clip_multimodal import CLIPImageRetriever, create_image_search_tool

from clip_multimodal.access import AccessPolicy
from clip_multimodal.index import ImageIndex


def _digits(demo_images_dir: Path) -> list[Path]:
    return sorted((demo_images_dir / "digits").glob("*.png"))[:8]


def _seven(paths: list[Path]) -> Path:
    return next(p for p in paths if p.name.startswith("seven-"))


def _native(chroma_client: Any, demo_encoder: Any, demo_images_dir: Path) -> ImageIndex:
    """A collection written by Chroma's own API through its embedding-function protocol."""
    from clip_multimodal.chroma import CLIPEmbeddingFunction, URILoader

    paths = _digits(demo_images_dir)
    native = chroma_client.create_collection(
        f"native-{uuid.uuid4().hex[:10]}",
        embedding_function=CLIPEmbeddingFunction(encoder=demo_encoder),
        data_loader=URILoader(),
    )
    native.add(ids=[p.stem for p in paths], uris=[str(p) for p in paths])
    return ImageIndex.open_read_only(demo_encoder, native.name, client=chroma_client)


def _llama_index(chroma_client: Any, demo_encoder: Any, demo_images_dir: Path) -> ImageIndex:
    """A collection written by LlamaIndex's ChromaVectorStore (image nodes)."""
    from llama_index.core.schema import ImageNode
    from llama_index.vector_stores import chroma as chroma_store

    paths = _digits(demo_images_dir)
    vectors = demo_encoder.embed_images(paths)
    collection = chroma_client.create_collection(f"llama-{uuid.uuid4().hex[:10]}")
    nodes = [
        ImageNode(id_=p.stem, image_path=str(p), embedding=v.tolist(), metadata={"file": p.name})
        for p, v in zip(paths, vectors, strict=True)
    ]
    chroma_store.ChromaVectorStore(chroma_collection=collection).add(nodes)
    return ImageIndex.open_read_only(demo_encoder, collection.name, client=chroma_client)


@pytest.fixture(params=["native", "llama-index"])
def foreign(
    request: pytest.FixtureRequest, chroma_client: Any, demo_encoder: Any, demo_images_dir: Path
) -> tuple[str, ImageIndex]:
    build = _native if request.param == "native" else _llama_index
    return request.param, build(chroma_client, demo_encoder, demo_images_dir)


def test_the_retriever_finds_images_in_foreign_collections(
    foreign: tuple[str, ImageIndex], demo_images_dir: Path
) -> None:
    _, index = foreign
    seven = _seven(_digits(demo_images_dir))

    images = AccessPolicy(roots=[demo_images_dir])  # image queries are opt-in
    docs = CLIPImageRetriever(index=index, k=3, image_access=images).invoke(str(seven))

    assert len(docs) == 3
    assert docs[0].id == seven.stem
    assert docs[0].metadata["score"] == pytest.approx(1.0, abs=1e-3)
    filtered = CLIPImageRetriever(index=index, k=3, where={"no-such-key": "x"}).invoke("a seven")
    assert filtered == []  # the user's filter still applies


def test_the_agent_tool_finds_images_in_foreign_collections(
    foreign: tuple[str, ImageIndex], demo_images_dir: Path
) -> None:
    written_by, index = foreign
    seven = _seven(_digits(demo_images_dir))

    tool = create_image_search_tool(index, k=2, image_access=AccessPolicy(roots=[demo_images_dir]))
    results = tool.invoke({"query": str(seven)})

    assert len(results) == 2
    assert results[0]["score"] == pytest.approx(1.0, abs=1e-3)
    if written_by == "native":  # Chroma's uris field; LlamaIndex keeps the path elsewhere
        assert results[0]["uri"] == str(seven)
