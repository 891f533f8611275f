"""CLIPMultiModalEmbedding inside LlamaIndex's MultiModalVectorStoreIndex, on ChromaVectorStore
for both the text and the image store, with real Chroma (embedded and HTTP) and the demo model.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import textwrap
import uuid
from pathlib import Path
from typing import Any

import pytest
from llama_index.core import StorageContext
from llama_index.core.indices import MultiModalVectorStoreIndex
from llama_index.core.node_parser import SentenceSplitter
from llama_index.core.query_engine import RetrieverQueryEngine
from llama_index.core.schema import (
    ImageNode,
    NodeWithScore,
    TextNode,
)
from llama_index.embeddings.clip_multimodal import CLIPMultiModalEmbedding
from llama_index.readers.clip_multimodal import FolderReader, content_node_id
from llama_index.retrievers.clip_multimodal import CLIPImageRetriever
from llama_index.vector_stores.chroma import ChromaVectorStore

from clip_multimodal.datasets import animal_query, digit_query
from examples.llamaindex_multimodal_rag import EchoMultiModalLLM

README = Path(__file__).resolve().parents[1] / "README.md"
COSINE = {"hnsw": {"space": "cosine"}}


def _build(client: Any, prefix: str, folder: Path, embed: CLIPMultiModalEmbedding) -> Any:
    """Build as the README shows: collections `<prefix>_text` and `<prefix>_images`, cosine."""
    documents = FolderReader().load_data(folder)
    text = client.get_or_create_collection(f"{prefix}_text", configuration=COSINE)
    images = client.get_or_create_collection(f"{prefix}_images", configuration=COSINE)
    text_store = ChromaVectorStore(chroma_collection=text)
    image_store = ChromaVectorStore(chroma_collection=images)
    storage = StorageContext.from_defaults(vector_store=text_store, image_store=image_store)
    return MultiModalVectorStoreIndex.from_documents(
        documents,
        storage_context=storage,
        embed_model=embed,
        image_embed_model=embed,
        transformations=[SentenceSplitter(id_func=content_node_id)],
    )


@pytest.fixture(scope="module")
def embed(demo_encoder: Any) -> CLIPMultiModalEmbedding:
    return CLIPMultiModalEmbedding(encoder=demo_encoder)


@pytest.fixture(scope="module")
def index(module_client: Any, mixed_dir: Path, embed: CLIPMultiModalEmbedding) -> Any:
    return _build(module_client, f"li-mm-{uuid.uuid4().hex[:10]}", mixed_dir, embed)


def _name(hit: NodeWithScore) -> str:
    node = hit.node
    path = node.image_path if isinstance(node, ImageNode) else node.metadata.get("file_path")
    return Path(str(path)).name


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_both_stores_hold_their_nodes(index: Any, mixed_dir: Path) -> None:
    image_collection = index.image_vector_store.client
    text_collection = index.vector_store.client
    assert image_collection.count() == len(list(mixed_dir.rglob("*.png")))
    assert text_collection.count() == len(list(mixed_dir.glob("*.txt")))


# -- retrieval through LlamaIndex's own retriever ------------------------------------------


@pytest.mark.parametrize(
    ("query", "prefix"), [(digit_query("seven"), "seven-"), (animal_query("cat"), "cat-")]
)
def test_text_to_image_retrieve(index: Any, query: str, prefix: str) -> None:
    hits = index.as_retriever(image_similarity_top_k=3).text_to_image_retrieve(query)
    assert len(hits) == 3
    assert all(isinstance(h.node, ImageNode) for h in hits)
    assert _name(hits[0]).startswith(prefix), [_name(h) for h in hits]


def test_image_to_image_retrieve(index: Any, mixed_dir: Path) -> None:
    zebra = next(mixed_dir.glob("animals/zebra-*.png"))
    hits = index.as_retriever(image_similarity_top_k=3).image_to_image_retrieve(str(zebra))
    assert _name(hits[0]) == zebra.name
    assert all("/animals/" in str(h.node.image_path) for h in hits)  # type: ignore[attr-defined]


async def test_async_retrieve_matches_sync(index: Any, mixed_dir: Path) -> None:
    retriever = index.as_retriever(similarity_top_k=1, image_similarity_top_k=3)
    query = digit_query("three")
    sync = [(h.node.node_id, h.score) for h in retriever.retrieve(query)]
    got = [(h.node.node_id, h.score) for h in await retriever.aretrieve(query)]
    assert [i for i, _ in got] == [i for i, _ in sync]
    assert [s for _, s in got] == pytest.approx([s for _, s in sync], abs=1e-5)


def test_retrieve_mixes_text_and_images(index: Any) -> None:
    hits = index.as_retriever(similarity_top_k=1, image_similarity_top_k=2).retrieve(
        "the digits scanned at eight by eight pixels"
    )
    kinds = [type(h.node) for h in hits]
    assert kinds.count(ImageNode) == 2
    texts = [h for h in hits if type(h.node) is TextNode]
    assert len(texts) == 1 and _name(texts[0]).endswith(".txt")


# -- query engines with a multimodal LLM that records what it is shown ---------------------


def test_as_query_engine_passes_the_retrieved_images(index: Any, mixed_dir: Path) -> None:
    llm = EchoMultiModalLLM()
    # SimpleMultiModalQueryEngine is deprecated in llama-index-core 0.14.23; as_query_engine
    # still returns it, so this is the path most users run.
    with pytest.warns(DeprecationWarning, match="SimpleMultiModalQueryEngine"):
        engine = index.as_query_engine(llm=llm, similarity_top_k=1, image_similarity_top_k=3)
    response = engine.query(digit_query("seven"))
    images = [h for h in response.source_nodes if isinstance(h.node, ImageNode)]
    assert len(llm.received) == 1
    shown = [str(block.path) for block in llm.received[0]]
    assert shown == [str(h.node.image_path) for h in images]  # type: ignore[attr-defined]
    assert Path(shown[0]).name.startswith("seven-")
    assert "I was shown 3 image(s)" in str(response)


def test_image_query_engine(index: Any, mixed_dir: Path) -> None:
    llm = EchoMultiModalLLM()
    with pytest.warns(DeprecationWarning, match="SimpleMultiModalQueryEngine"):
        engine = index.as_query_engine(llm=llm, image_similarity_top_k=2)
    cat = next(mixed_dir.glob("animals/cat-*.png"))
    engine.image_query(str(cat), "What animal is this?")
    assert str(llm.received[0][0].path) == str(cat)


@pytest.mark.parametrize("which", ["index", "clip_image_retriever"])
def test_retriever_query_engine_multimodal(
    index: Any, mixed_dir: Path, embed: CLIPMultiModalEmbedding, which: str
) -> None:
    """The non-deprecated path: RetrieverQueryEngine(multimodal=True) sends the image bytes."""
    if which == "index":
        retriever = index.as_retriever(similarity_top_k=1, image_similarity_top_k=3)
    else:
        collection = index.image_vector_store.client
        retriever = CLIPImageRetriever.from_collection(collection, embed, image_similarity_top_k=3)
    llm = EchoMultiModalLLM()
    engine = RetrieverQueryEngine.from_args(retriever=retriever, llm=llm, multimodal=True)
    response = engine.query(digit_query("seven"))
    by_digest = {_sha(p): p.name for p in mixed_dir.rglob("*.png")}
    shown = [
        by_digest[hashlib.sha256(b.resolve_image().getvalue()).hexdigest()] for b in llm.received[0]
    ]
    expected = [_name(h) for h in response.source_nodes if isinstance(h.node, ImageNode)]
    assert shown == expected
    assert shown[0].startswith("seven-")


# -- persist, then reload from the Chroma path in a new process -----------------------------


def _block(heading: str) -> str:
    """The first python block of a README section, exactly as documented."""
    section = README.read_text(encoding="utf-8").split(f"## {heading}", 1)[1]
    match = re.search(r"```python\n(.*?)```", section, re.DOTALL)
    assert match, f"the README's section {heading!r} has no python block"
    return match.group(1)


def _recipe() -> str:
    """The reload recipe exactly as the README documents it (its first python block)."""
    return _block("Reloading a persisted index")


CHILD = """
import json, sys, warnings
warnings.simplefilter("error")
warnings.filterwarnings("ignore", category=DeprecationWarning, module="chromadb.*")
from clip_multimodal.models import DEMO_MODEL
from llama_index.embeddings.clip_multimodal import CLIPMultiModalEmbedding
from examples.llamaindex_multimodal_rag import EchoMultiModalLLM
from llama_index.core.query_engine import RetrieverQueryEngine
{recipe}
embed = CLIPMultiModalEmbedding(model_name=DEMO_MODEL, device="cpu")
index = load_index(sys.argv[1], embed)
retriever = index.as_retriever(similarity_top_k=1, image_similarity_top_k=3)
hits = retriever.text_to_image_retrieve(sys.argv[2])
llm = EchoMultiModalLLM()
engine = RetrieverQueryEngine.from_args(retriever=retriever, llm=llm, multimodal=True)
engine.query(sys.argv[2])
print(json.dumps({{
    "hits": [[h.node.node_id, h.score, h.node.image_path] for h in hits],
    "images_shown": len(llm.received[0]),
}}))
"""


@pytest.mark.slow  # a fresh Python process with torch
def test_reload_in_a_new_process(
    tmp_path: Path, mixed_dir: Path, embed: CLIPMultiModalEmbedding
) -> None:
    import chromadb

    path = tmp_path / "chroma"
    client = chromadb.PersistentClient(path=str(path))
    index = _build(client, "mm", mixed_dir, embed)
    query = digit_query("seven")
    before = index.as_retriever(image_similarity_top_k=3).text_to_image_retrieve(query)
    del index, client

    script = tmp_path / "reload.py"
    script.write_text(CHILD.format(recipe=textwrap.dedent(_recipe())), encoding="utf-8")
    repo = Path(__file__).resolve().parents[3]
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(repo), os.environ.get("PYTHONPATH", "")]),
    }
    done = subprocess.run(
        [sys.executable, str(script), str(path), query],
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
        cwd=tmp_path,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    after = json.loads(done.stdout.strip().splitlines()[-1])
    assert [h[0] for h in after["hits"]] == [h.node.node_id for h in before]
    assert [h[1] for h in after["hits"]] == pytest.approx([h.score for h in before], abs=1e-5)
    assert Path(after["hits"][0][2]).name.startswith("seven-")
    assert after["images_shown"] == 3


def test_reloaded_index_embeds_nothing_at_load(tmp_path: Path, mixed_dir: Path) -> None:
    """from_vector_store only opens the stores: no image goes through the model again."""
    import chromadb

    from clip_multimodal.testing import FakeEncoder

    encoder = FakeEncoder()
    embed = CLIPMultiModalEmbedding(encoder=encoder)
    client = chromadb.PersistentClient(path=str(tmp_path / "chroma"))
    _build(client, "mm", mixed_dir, embed)
    encoder.calls.clear()
    namespace: dict[str, Any] = {}
    exec(compile(_recipe(), str(README), "exec"), namespace)  # the README's own code
    reloaded = namespace["load_index"](str(tmp_path / "chroma"), embed)
    assert encoder.calls == []
    assert reloaded.as_retriever(image_similarity_top_k=2).text_to_image_retrieve("x")
    assert encoder.calls == [("embed_texts", 1)]


# -- the build recipe, run again and again ---------------------------------------------------


def _distinct_pngs(folder: Path) -> int:
    return len({_sha(p) for p in folder.rglob("*.png")})


@pytest.mark.slow  # three builds with the demo model
def test_rerunning_the_recipe_adds_nothing_twice(
    tmp_path: Path,
    mixed_dir: Path,
    embed: CLIPMultiModalEmbedding,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The README's build recipe, as written, three times into one persistent Chroma."""
    import chromadb

    monkeypatch.chdir(tmp_path)
    shutil.copytree(mixed_dir, tmp_path / "library")
    shutil.copy(next(mixed_dir.glob("animals/zebra-*.png")), tmp_path / "query.png")
    recipe = compile(_block("Multimodal RAG with"), str(README), "exec")
    for _ in range(3):
        namespace: dict[str, Any] = {"embed": embed}
        exec(recipe, namespace)  # the README's own code
    assert "llama-index-readers-file" not in caplog.text

    client = chromadb.PersistentClient(path=str(tmp_path / "chroma"))
    assert client.get_collection("mm_images").count() == _distinct_pngs(mixed_dir)
    assert client.get_collection("mm_text").count() == len(list(mixed_dir.glob("*.txt")))
    hits = namespace["retriever"].text_to_image_retrieve(digit_query("seven"))
    paths = [h.node.image_path for h in hits]
    assert len(paths) == 3 and len(set(paths)) == 3, paths
    assert _name(hits[0]).startswith("seven-")


def test_node_ids_come_from_file_content(
    tmp_path: Path, mixed_dir: Path, demo_encoder: Any
) -> None:
    """An image node's id is the id clip-multimodal's ImageIndex gives the same file."""
    import chromadb

    from clip_multimodal import ImageIndex

    client = chromadb.PersistentClient(path=str(tmp_path / "chroma"))
    embed = CLIPMultiModalEmbedding(encoder=demo_encoder)
    index = _build(client, "ids", mixed_dir, embed)
    seven = next(mixed_dir.glob("digits/seven-*.png"))
    ours = ImageIndex(demo_encoder, "ids-core", client=client)
    [core_id] = ours.add([str(seven)]).ids
    assert core_id == _sha(seven)
    stored = index.image_vector_store.client.get(ids=[core_id], include=["metadatas"])
    assert stored["ids"] == [core_id]
    note = next(mixed_dir.glob("*.txt"))
    assert index.vector_store.client.get(ids=[_sha(note)])["ids"] == [_sha(note)]
