"""CLIPChroma against what langchain-chroma's own integration tests expect of `Chroma`.

Our own tests of the behaviours that suite checks (ids, metadata, updates, filters, MMR,
relevance scores, get/delete, collection handling, persistence, client settings), each on
LangChain's fake embeddings and on CLIP (the demo model), embedded and over HTTP. Where
CLIPChroma differs on purpose (scores are similarities), the test says so.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from langchain_clip_multimodal import CLIPChroma
from langchain_core.documents import Document
from langchain_core.embeddings import DeterministicFakeEmbedding, Embeddings

from clip_multimodal.errors import IncompatibleIndexError, IndexNotFoundError

TEXTS = ["foo", "bar", "baz"]
PAGES = [{"page": str(i)} for i in range(len(TEXTS))]
IDS = [f"id_{i}" for i in range(len(TEXTS))]

MakeStore = Callable[..., CLIPChroma]


@pytest.fixture(params=["fake", "clip"])
def embeddings(request: pytest.FixtureRequest) -> Embeddings:
    if request.param == "fake":
        return DeterministicFakeEmbedding(size=16)
    return request.getfixturevalue("clip_embeddings")  # type: ignore[no-any-return]


@pytest.fixture
def make_store(chroma_client: Any, embeddings: Embeddings) -> MakeStore:
    """`make_store(texts, **from_texts_kwargs)`: a new collection on the test's client."""

    def make(texts: list[str] = TEXTS, **kwargs: Any) -> CLIPChroma:
        kwargs.setdefault("collection_name", f"conf-{uuid.uuid4().hex[:12]}")
        return CLIPChroma.from_texts(texts, embeddings, client=chroma_client, **kwargs)

    return make


def _unit(vector: list[float]) -> np.ndarray:
    array = np.asarray(vector, dtype=np.float32)
    return array / np.linalg.norm(array)


# -- ids and metadata ------------------------------------------------------------------------


def test_ids_are_kept_or_generated(make_store: MakeStore) -> None:
    given = make_store(ids=IDS).similarity_search("foo", k=1)
    generated = make_store().similarity_search("foo", k=1)
    assert [(d.page_content, d.id) for d in given] == [("foo", "id_0")]
    assert generated[0].page_content == "foo" and generated[0].id


def test_metadata_comes_back_exactly(make_store: MakeStore) -> None:
    store = make_store(metadatas=PAGES, ids=IDS)
    assert store.similarity_search("foo", k=1) == [
        Document(page_content="foo", metadata={"page": "0"}, id="id_0")
    ]


async def test_async_search_keeps_ids(make_store: MakeStore) -> None:
    store = make_store(ids=IDS)
    docs = await store.asimilarity_search("foo", k=1)
    assert [(d.page_content, d.id) for d in docs] == [("foo", "id_0")]


def test_documents_with_and_without_metadata_and_their_ids(make_store: MakeStore) -> None:
    store = make_store([])
    docs = [Document("foo", id="0"), Document("bar", metadata={"baz": 1}, id="1")]
    assert store.add_documents(docs) == ["0", "1"]
    found = store.similarity_search("foo bar")
    assert sorted(found, key=lambda d: d.page_content) == sorted(docs, key=lambda d: d.page_content)


def test_update_document_re_embeds_it(make_store: MakeStore, embeddings: Embeddings) -> None:
    store = make_store(["foo"], metadatas=[{"page": "0"}], ids=["doc1"])
    before = store.get(ids=["doc1"], include=["embeddings"])["embeddings"][0]

    store.update_document("doc1", Document("updated foo", metadata={"page": "0"}))

    after = store.get(ids=["doc1"], include=["embeddings"])["embeddings"][0]
    assert store.similarity_search("updated foo", k=1) == [
        Document(page_content="updated foo", metadata={"page": "0"}, id="doc1")
    ]
    expected = _unit(embeddings.embed_documents(["updated foo"])[0])
    np.testing.assert_allclose(after, expected, atol=1e-6)
    assert not np.allclose(after, before)


# -- filters, scores, MMR --------------------------------------------------------------------


def test_metadata_and_document_filters(make_store: MakeStore) -> None:
    texts = ["far", "bar", "baz"]
    store = make_store(texts, metadatas=[{"first_letter": t[0]} for t in texts], ids=IDS)
    assert store.similarity_search("far", k=1, filter={"first_letter": "f"}) == [
        Document(page_content="far", metadata={"first_letter": "f"}, id="id_0")
    ]
    assert store.similarity_search("far", k=1, filter={"first_letter": "b"})[0].id in IDS[1:]
    scored = store.similarity_search_with_score("far", k=3, filter={"first_letter": "b"})
    assert {d.id for d, _ in scored} == {"id_1", "id_2"}
    contains = store.similarity_search("far", k=3, where_document={"$contains": "az"})
    assert [d.id for d in contains] == ["id_2"]


def test_scores_are_similarities_not_distances(make_store: MakeStore) -> None:
    """A deliberate difference: Chroma gives the exact match a distance of 0.0."""
    store = make_store(metadatas=PAGES, ids=IDS)
    [(doc, score)] = store.similarity_search_with_score("foo", k=1)
    assert doc == Document(page_content="foo", metadata={"page": "0"}, id="id_0")
    assert score == pytest.approx(1.0, abs=1e-4)


def test_relevance_scores_by_vector_and_custom_function(
    make_store: MakeStore, embeddings: Embeddings
) -> None:
    store = make_store(metadatas=PAGES, ids=IDS)
    vector = embeddings.embed_query("foo")
    scored = store.similarity_search_by_vector_with_relevance_scores(vector, k=3)
    assert scored[0][0].id == "id_0" and scored[0][1] == pytest.approx(1.0, abs=1e-4)
    assert all(0.0 <= r <= 1.0 for _, r in scored)
    assert [r for _, r in scored] == sorted((r for _, r in scored), reverse=True)

    zero = make_store(metadatas=PAGES, ids=IDS, relevance_score_fn=lambda s: s * 0)
    assert [r for _, r in zero.similarity_search_with_relevance_scores("foo", k=3)] == [0.0] * 3


def test_search_with_vectors_gives_the_stored_vectors(
    make_store: MakeStore, embeddings: Embeddings
) -> None:
    store = make_store(metadatas=PAGES)
    [(doc, vector)] = store.similarity_search_with_vectors("foo", k=1)
    assert doc.page_content == "foo" and doc.metadata == {"page": "0"} and doc.id
    stored = store.get(ids=[doc.id], include=["embeddings"])["embeddings"][0]
    np.testing.assert_allclose(vector, stored, atol=1e-6)  # the record's own vector
    # and it is this text's vector (a query embedded alone may differ from the same text
    # embedded in a batch in the last bits: bf16 kernels round by batch shape)
    assert float(np.dot(vector, _unit(embeddings.embed_query("foo")))) > 0.9999


def test_mmr_by_text_and_by_vector(make_store: MakeStore, embeddings: Embeddings) -> None:
    store = make_store()
    by_text = store.max_marginal_relevance_search("foo", k=1)
    by_vector = store.max_marginal_relevance_search_by_vector(embeddings.embed_query("foo"), k=1)
    assert [d.page_content for d in by_text] == [d.page_content for d in by_vector] == ["foo"]
    assert by_text[0].id is not None


# -- get and delete --------------------------------------------------------------------------


def test_get_includes_what_is_asked(make_store: MakeStore) -> None:
    store = make_store(metadatas=PAGES, ids=IDS)
    assert store.get(include=["embeddings"])["embeddings"] is not None
    plain = store.get()
    assert plain["embeddings"] is None
    assert sorted(plain["documents"]) == sorted(TEXTS)
    assert store.get(where={"page": "1"})["ids"] == ["id_1"]
    assert len(store.get(limit=2)["ids"]) == 2 and len(store.get(offset=1)["ids"]) == 2


def test_delete_by_id_and_by_where(make_store: MakeStore) -> None:
    store = make_store([])
    store.add_documents(
        [Document("foo", metadata={"test": "bar"}), Document("bar", metadata={"test": "foo"})]
    )
    assert store._collection.count() == 2
    store.delete(where={"test": "bar"})
    assert [d.page_content for d in store.similarity_search("foo", k=4)] == ["bar"]
    store.delete(store.get()["ids"])
    assert store._collection.count() == 0


def test_delete_collection_then_reset(make_store: MakeStore) -> None:
    store = make_store(collection_metadata={"owner": "tests"})
    name, client = store._collection.name, store._client

    store.delete_collection()

    with pytest.raises(ValueError, match="not initialized"):
        _ = store._collection
    with pytest.raises(Exception, match="does not exist"):
        client.get_collection(name)
    with pytest.raises(ValueError, match="not initialized"):
        store.similarity_search("foo")
    store.reset_collection()  # makes it again, empty
    assert store._collection.count() == 0 and store._client.get_collection(name).name == name


def test_reset_collection_empties_it_and_keeps_its_name(make_store: MakeStore) -> None:
    store = make_store(collection_metadata={"owner": "tests"})
    name = store._collection.name
    store.reset_collection()
    assert store._collection.name == name and store._collection.count() == 0
    assert store._client.get_collection(name).metadata["owner"] == "tests"
    store.add_texts(["qux"], ids=["q"])
    assert store.similarity_search("qux", k=1)[0].id == "q"


# -- collection handling -------------------------------------------------------------------


def test_create_collection_if_not_exists(chroma_client: Any, embeddings: Embeddings) -> None:
    missing = f"conf-missing-{uuid.uuid4().hex[:8]}"
    with pytest.raises(IndexNotFoundError, match=missing):
        CLIPChroma(missing, embeddings, client=chroma_client, create_collection_if_not_exists=False)
    assert missing not in [c.name for c in chroma_client.list_collections()]  # nothing made

    existing = f"conf-existing-{uuid.uuid4().hex[:8]}"
    chroma_client.create_collection(existing, configuration={"hnsw": {"space": "cosine"}})
    for create in (False, True):
        store = CLIPChroma(
            existing, embeddings, client=chroma_client, create_collection_if_not_exists=create
        )
        assert store._client.get_collection(existing).name == existing

    l2 = chroma_client.create_collection(f"conf-l2-{uuid.uuid4().hex[:8]}")  # Chroma's default
    with pytest.raises(IncompatibleIndexError, match="cosine"):  # a deliberate difference
        CLIPChroma(l2.name, embeddings, client=chroma_client, create_collection_if_not_exists=False)

    made = f"conf-made-{uuid.uuid4().hex[:8]}"
    CLIPChroma(made, embeddings, client=chroma_client, create_collection_if_not_exists=True)
    assert chroma_client.get_collection(made).name == made


def test_collection_metadata_is_recorded_and_the_space_stays_cosine(
    chroma_client: Any, embeddings: Embeddings
) -> None:
    name = f"conf-meta-{uuid.uuid4().hex[:8]}"
    store = CLIPChroma(name, embeddings, client=chroma_client, collection_metadata={"team": "a"})
    assert store._collection.metadata["team"] == "a"
    l2 = f"conf-l2-{uuid.uuid4().hex[:8]}"
    with pytest.raises(ValueError, match="cosine"):
        CLIPChroma(l2, embeddings, client=chroma_client, collection_metadata={"hnsw:space": "l2"})
    assert l2 not in [c.name for c in chroma_client.list_collections()]  # nothing made


# -- persistence and clients -----------------------------------------------------------------


@pytest.mark.parametrize("with_settings", [False, True], ids=["plain", "client_settings"])
def test_a_persisted_store_reopens(
    embeddings: Embeddings, tmp_path: Path, with_settings: bool
) -> None:
    from chromadb.config import Settings

    settings = {"client_settings": Settings()} if with_settings else {}
    folder = str(tmp_path / "db")
    CLIPChroma.from_texts(
        TEXTS,
        embeddings,
        ids=IDS,
        collection_name="persisted",
        persist_directory=folder,
        **settings,
    )
    again = CLIPChroma("persisted", embeddings, persist_directory=folder)
    assert again.similarity_search("foo", k=1) == [Document(page_content="foo", id="id_0")]
    assert Path(folder).is_dir()
    again.delete_collection()


def test_a_store_from_client_settings_alone_or_a_client(
    chroma_client: Any, embeddings: Embeddings
) -> None:
    from chromadb.config import Settings

    in_memory = CLIPChroma(f"conf-{uuid.uuid4().hex[:8]}", embeddings, client_settings=Settings())
    in_memory.add_texts(["foo"], ids=["a"])
    assert in_memory.similarity_search("foo", k=1)[0].id == "a"
    name = f"conf-{uuid.uuid4().hex[:8]}"
    from_client = CLIPChroma(name, embedding_function=embeddings, client=chroma_client)
    assert from_client._client is chroma_client
