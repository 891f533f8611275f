"""Our classes beside the user's own chromadb clients and LlamaIndex objects, in one process.

Users make clients with default settings and set no telemetry variable; so do these tests.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest
from llama_index.core import StorageContext
from llama_index.core.indices import MultiModalVectorStoreIndex
from llama_index.core.node_parser import SentenceSplitter
from llama_index.core.schema import ImageNode
from llama_index.embeddings.clip_multimodal import CLIPMultiModalEmbedding
from llama_index.readers.clip_multimodal import FolderReader, content_node_id
from llama_index.retrievers.clip_multimodal import CLIPImageRetriever
from llama_index.vector_stores.chroma import ChromaVectorStore

from clip_multimodal.datasets import digit_query


@pytest.fixture(scope="module")
def embed(demo_encoder: Any) -> CLIPMultiModalEmbedding:
    return CLIPMultiModalEmbedding(encoder=demo_encoder)


def _build(client: Any, folder: Path, embed: CLIPMultiModalEmbedding) -> MultiModalVectorStoreIndex:
    texts = ChromaVectorStore(chroma_collection=client.get_or_create_collection("mix_text"))
    images = ChromaVectorStore(chroma_collection=client.get_or_create_collection("mix_images"))
    return MultiModalVectorStoreIndex.from_documents(
        FolderReader().load_data(folder),
        storage_context=StorageContext.from_defaults(vector_store=texts, image_store=images),
        embed_model=embed,
        image_embed_model=embed,
        transformations=[SentenceSplitter(id_func=content_node_id)],
    )


def test_users_clients_and_ours_in_one_process(
    tmp_path: Path, mixed_dir: Path, embed: CLIPMultiModalEmbedding
) -> None:
    import chromadb

    assert "ANONYMIZED_TELEMETRY" not in os.environ
    persistent = chromadb.PersistentClient(path=str(tmp_path / "chroma"))
    ephemeral = chromadb.EphemeralClient()
    query = digit_query("seven")
    for client in (persistent, ephemeral):
        index = _build(client, mixed_dir, embed)
        theirs = index.as_retriever(image_similarity_top_k=3).text_to_image_retrieve(query)
        ours = CLIPImageRetriever.from_collection(
            client.get_collection("mix_images"), embed, image_similarity_top_k=3
        ).text_to_image_retrieve(query)
        assert [h.node.node_id for h in ours] == [h.node.node_id for h in theirs]
        assert all(isinstance(h.node, ImageNode) for h in ours)
        assert Path(str(ours[0].node.image_path)).name.startswith("seven-")  # type: ignore[attr-defined]
    again = chromadb.PersistentClient(path=str(tmp_path / "chroma"))
    assert again.get_collection("mix_images").count() == len(list(mixed_dir.rglob("*.png")))


@pytest.mark.parametrize("ours_first", [False, True])
def test_image_index_beside_the_users_client(
    tmp_path: Path, mixed_dir: Path, embed: CLIPMultiModalEmbedding, ours_first: bool
) -> None:
    """The user's PersistentClient and our ImageIndex on one folder, in either order."""
    import chromadb

    from clip_multimodal import ImageIndex

    path = tmp_path / "chroma"
    if ours_first:
        index = ImageIndex(embed.encoder, "ours", path=path)
        client = chromadb.PersistentClient(path=str(path))
    else:
        client = chromadb.PersistentClient(path=str(path))
        index = ImageIndex(embed.encoder, "ours", path=path)
    index.index_folder(mixed_dir, progress=False)
    _build(client, mixed_dir, embed)
    hits = CLIPImageRetriever(index, image_similarity_top_k=3).text_to_image_retrieve(
        digit_query("seven")
    )
    assert Path(str(hits[0].node.image_path)).name.startswith("seven-")  # type: ignore[attr-defined]
