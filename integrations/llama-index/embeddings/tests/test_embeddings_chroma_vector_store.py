"""LlamaIndex's ChromaVectorStore with our embedding: the behaviours its own package's tests
check (construction, add and query sync and async, metadata-only queries, get_nodes,
delete_nodes, delete by document, clear, MMR, image nodes without documents), plus
persistence and the indexes built on it, with every vector computed by
CLIPMultiModalEmbedding and the demo model.

The clients are the ones users make, with default settings: chromadb's EphemeralClient,
PersistentClient and HttpClient (against the real server), and no telemetry variable set.
"""

from __future__ import annotations

import os
import uuid
from pathlib import Path
from typing import Any

import pytest
from llama_index.core import StorageContext, VectorStoreIndex
from llama_index.core.indices import MultiModalVectorStoreIndex
from llama_index.core.schema import ImageNode, NodeRelationship, RelatedNodeInfo, TextNode
from llama_index.core.vector_stores.types import (
    BasePydanticVectorStore,
    FilterOperator,
    MetadataFilter,
    MetadataFilters,
    VectorStoreQuery,
    VectorStoreQueryMode,
)
from llama_index.embeddings.clip_multimodal import CLIPMultiModalEmbedding
from llama_index.vector_stores.chroma import ChromaVectorStore

from clip_multimodal.datasets import animal_query, digit_query

#: key -> (text, group): each text is a caption the demo model was trained on.
TEXTS = {
    "seven": (digit_query("seven"), "digits"),
    "three": (digit_query("three"), "digits"),
    "cat": (animal_query("cat"), "animals"),
    "zebra": (animal_query("zebra"), "animals"),
}


def _name(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:12]}"


@pytest.fixture(scope="module")
def embed(demo_encoder: Any) -> CLIPMultiModalEmbedding:
    return CLIPMultiModalEmbedding(encoder=demo_encoder)


def _nodes(embed: CLIPMultiModalEmbedding) -> list[TextNode]:
    vectors = embed.get_text_embedding_batch([text for text, _ in TEXTS.values()])
    return [
        TextNode(
            id_=f"node-{key}",
            text=text,
            metadata={"group": group, "rank": i},
            relationships={NodeRelationship.SOURCE: RelatedNodeInfo(node_id=f"doc-{group}")},
            embedding=vector,
        )
        for i, ((key, (text, group)), vector) in enumerate(zip(TEXTS.items(), vectors, strict=True))
    ]


@pytest.fixture(params=["ephemeral", "persistent", "http"])
def client(request: pytest.FixtureRequest, tmp_path: Path) -> Any:
    """A client as a user makes it: default settings."""
    import chromadb

    assert "ANONYMIZED_TELEMETRY" not in os.environ
    if request.param == "ephemeral":
        return chromadb.EphemeralClient()
    if request.param == "persistent":
        return chromadb.PersistentClient(path=str(tmp_path / "chroma"))
    host, port = request.getfixturevalue("chroma_server")
    return chromadb.HttpClient(host=host, port=port)


@pytest.fixture
def store(client: Any) -> ChromaVectorStore:
    # No configuration: Chroma's default space, as ChromaVectorStore.from_params creates it.
    return ChromaVectorStore(chroma_collection=client.create_collection(_name("li-vs")))


def _query(embed: CLIPMultiModalEmbedding, key: str, k: int = 1, **options: Any) -> Any:
    return VectorStoreQuery(
        query_embedding=embed.get_query_embedding(TEXTS[key][0]), similarity_top_k=k, **options
    )


def _ids(nodes: list[Any]) -> list[str]:
    return [n.node_id for n in nodes]


# -- construction --------------------------------------------------------------------------


def test_construction(client: Any, tmp_path: Path, chroma_server: tuple[str, int]) -> None:
    collection = client.create_collection(_name("li-vs"))
    assert isinstance(ChromaVectorStore.from_collection(collection), BasePydanticVectorStore)
    on_disk = ChromaVectorStore.from_params(
        collection_name="li-params", persist_dir=str(tmp_path / "params")
    )
    host, port = chroma_server
    served = ChromaVectorStore.from_params(collection_name=_name("li-vs"), host=host, port=port)
    for store in (on_disk, served):
        assert isinstance(store, ChromaVectorStore)
        assert store.client.count() == 0


# -- add, query, get, delete, clear --------------------------------------------------------


@pytest.mark.parametrize("use_async", [False, True])
async def test_add_and_query(
    store: ChromaVectorStore, embed: CLIPMultiModalEmbedding, use_async: bool
) -> None:
    nodes = _nodes(embed)
    if use_async:
        ids = await store.async_add(nodes)
        vector = await embed.aget_query_embedding(TEXTS["cat"][0])
        result = await store.aquery(VectorStoreQuery(query_embedding=vector, similarity_top_k=1))
    else:
        ids = store.add(nodes)
        result = store.query(_query(embed, "cat"))
    assert ids == _ids(nodes)
    assert result.ids == ["node-cat"]
    assert result.nodes[0].get_content() == TEXTS["cat"][0]
    assert result.nodes[0].metadata == {"group": "animals", "rank": 2}
    assert result.similarities[0] == pytest.approx(1.0, abs=1e-3)  # exp(-distance), distance 0


@pytest.mark.parametrize("use_async", [False, True])
async def test_query_by_metadata_filters_only(
    store: ChromaVectorStore, embed: CLIPMultiModalEmbedding, use_async: bool
) -> None:
    store.add(_nodes(embed))
    query = VectorStoreQuery(
        filters=MetadataFilters(filters=[MetadataFilter(key="group", value="animals")]),
        similarity_top_k=10,
    )
    result = await store.aquery(query) if use_async else store.query(query)
    assert sorted(result.ids) == ["node-cat", "node-zebra"]


def test_query_with_filters_and_embedding(
    store: ChromaVectorStore, embed: CLIPMultiModalEmbedding
) -> None:
    store.add(_nodes(embed))
    digits = MetadataFilters(
        filters=[MetadataFilter(key="rank", value=1, operator=FilterOperator.LTE)]
    )
    result = store.query(_query(embed, "zebra", k=4, filters=digits))
    assert sorted(result.ids) == ["node-seven", "node-three"]


def test_get_nodes(store: ChromaVectorStore, embed: CLIPMultiModalEmbedding) -> None:
    store.add(_nodes(embed))
    got = store.get_nodes(node_ids=["node-seven", "node-zebra"])
    assert sorted(n.get_content() for n in got) == sorted([TEXTS["seven"][0], TEXTS["zebra"][0]])
    assert all(n.ref_doc_id in ("doc-digits", "doc-animals") for n in got)
    by_filter = store.get_nodes(
        node_ids=None,
        filters=MetadataFilters(filters=[MetadataFilter(key="group", value="digits")]),
    )
    assert sorted(_ids(by_filter)) == ["node-seven", "node-three"]


def test_delete_nodes(store: ChromaVectorStore, embed: CLIPMultiModalEmbedding) -> None:
    store.add(_nodes(embed))
    store.delete_nodes(node_ids=["node-seven", "node-cat"])
    assert sorted(_ids(store.get_nodes(node_ids=[f"node-{k}" for k in TEXTS]))) == [
        "node-three",
        "node-zebra",
    ]
    assert store.query(_query(embed, "seven")).ids == ["node-three"]


async def test_delete_by_document(store: ChromaVectorStore, embed: CLIPMultiModalEmbedding) -> None:
    store.add(_nodes(embed))
    store.delete("doc-digits")
    assert store.client.count() == 2
    await store.adelete("doc-animals")
    assert store.client.count() == 0


def test_clear(store: ChromaVectorStore, embed: CLIPMultiModalEmbedding) -> None:
    store.add(_nodes(embed))
    store.clear()
    assert store.get_nodes(node_ids=[f"node-{k}" for k in TEXTS]) == []


# -- MMR ------------------------------------------------------------------------------------


def test_mmr(store: ChromaVectorStore, embed: CLIPMultiModalEmbedding) -> None:
    store.add(_nodes(embed))
    query = _query(embed, "seven", k=2, mode=VectorStoreQueryMode.MMR)
    result = store.query(query, mmr_threshold=0.5)
    assert len(result.ids) == 2 and len(set(result.ids)) == 2
    assert result.ids[0] == "node-seven"
    with pytest.raises(ValueError, match="cannot coexist"):
        store.query(query, mmr_threshold=0.5, mmr_prefetch_k=4, mmr_prefetch_factor=2.0)


# -- image nodes: stored without a document, rebuilt as ImageNodes ---------------------------


def test_image_nodes_come_back_as_image_nodes(
    store: ChromaVectorStore, embed: CLIPMultiModalEmbedding, demo_images_dir: Path
) -> None:
    paths = sorted(str(p) for p in demo_images_dir.glob("digits/*.png"))[:6]
    vectors = embed.get_image_embedding_batch(paths)
    store.add([ImageNode(image_path=p, embedding=v) for p, v in zip(paths, vectors, strict=True)])
    result = store.query(VectorStoreQuery(query_embedding=vectors[2], similarity_top_k=1))
    node = result.nodes[0]
    assert isinstance(node, ImageNode)
    assert node.image_path == paths[2]
    assert node.get_content() == ""
    got = store.get_nodes(node_ids=[node.node_id])
    assert isinstance(got[0], ImageNode) and got[0].image_path == paths[2]


# -- the indexes on top, and persistence ----------------------------------------------------


def _plain_nodes() -> list[TextNode]:
    return [
        TextNode(id_=f"node-{key}", text=text, metadata={"group": group})
        for key, (text, group) in TEXTS.items()
    ]


async def test_vector_store_index_embeds_with_ours(
    store: ChromaVectorStore, embed: CLIPMultiModalEmbedding
) -> None:
    storage = StorageContext.from_defaults(vector_store=store)
    index = VectorStoreIndex(_plain_nodes(), storage_context=storage, embed_model=embed)
    assert store.client.count() == len(TEXTS)
    retriever = index.as_retriever(similarity_top_k=1)
    assert _ids([h.node for h in retriever.retrieve(TEXTS["zebra"][0])]) == ["node-zebra"]
    assert _ids([h.node for h in await retriever.aretrieve(TEXTS["three"][0])]) == ["node-three"]


def test_persisted_store_reopens(tmp_path: Path, embed: CLIPMultiModalEmbedding) -> None:
    path = str(tmp_path / "persisted")
    first = ChromaVectorStore.from_params(collection_name="li-persist", persist_dir=path)
    storage = StorageContext.from_defaults(vector_store=first)
    index = VectorStoreIndex(_plain_nodes(), storage_context=storage, embed_model=embed)
    before = index.as_retriever(similarity_top_k=2).retrieve(TEXTS["cat"][0])
    del index, storage, first

    again = ChromaVectorStore.from_params(collection_name="li-persist", persist_dir=path)
    reopened = VectorStoreIndex.from_vector_store(again, embed_model=embed)
    after = reopened.as_retriever(similarity_top_k=2).retrieve(TEXTS["cat"][0])
    assert [h.node.node_id for h in after] == [h.node.node_id for h in before]
    assert [h.score for h in after] == pytest.approx([h.score for h in before], abs=1e-5)


def test_multimodal_index_on_two_stores(
    client: Any, embed: CLIPMultiModalEmbedding, demo_images_dir: Path
) -> None:
    texts = ChromaVectorStore(chroma_collection=client.create_collection(_name("li-t")))
    images = ChromaVectorStore(chroma_collection=client.create_collection(_name("li-i")))
    storage = StorageContext.from_defaults(vector_store=texts, image_store=images)
    paths = sorted(str(p) for p in demo_images_dir.rglob("*.png"))
    # LlamaIndex skips nodes whose embed content is empty: an image node needs some metadata.
    images_nodes = [ImageNode(image_path=p, metadata={"file_path": p}) for p in paths]
    nodes = [*_plain_nodes(), *images_nodes]
    index = MultiModalVectorStoreIndex(
        nodes, storage_context=storage, embed_model=embed, image_embed_model=embed
    )
    assert (texts.client.count(), images.client.count()) == (len(TEXTS), len(paths))
    hits = index.as_retriever(similarity_top_k=1, image_similarity_top_k=2).retrieve(
        TEXTS["seven"][0]
    )
    assert [type(h.node).__name__ for h in hits] == ["TextNode", "ImageNode", "ImageNode"]
    assert Path(str(hits[1].node.image_path)).name.startswith("seven-")  # type: ignore[attr-defined]
