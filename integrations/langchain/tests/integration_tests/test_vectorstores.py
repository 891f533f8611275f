"""CLIPChroma: LangChain's standard vector-store suite on real Chroma (embedded and server),
then images on the real demo model."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from langchain_clip_multimodal import CLIPChroma
from langchain_core.vectorstores import VectorStore
from langchain_tests.integration_tests import VectorStoreIntegrationTests


class TestCLIPChromaStandard(VectorStoreIntegrationTests):
    """On the suite's fake embeddings (through the Embeddings adapter)."""

    @pytest.fixture
    def vectorstore(self, chroma_client: Any) -> Iterator[VectorStore]:
        name = f"lc-std-{uuid.uuid4().hex[:12]}"
        yield CLIPChroma(name, self.get_embeddings(), client=chroma_client)
        chroma_client.delete_collection(name)


class TestCLIPChromaStandardOnCLIP(VectorStoreIntegrationTests):
    """The same suite on CLIPEmbeddings (the demo model), as users run the store."""

    @pytest.fixture
    def vectorstore(self, chroma_client: Any, clip_embeddings: Any) -> Iterator[VectorStore]:
        store = CLIPChroma(
            f"lc-clip-{uuid.uuid4().hex[:12]}", clip_embeddings, client=chroma_client
        )
        yield store
        store.delete_collection()


# -- images on the demo model -------------------------------------------------------------


def _group_metadata(paths: list[Path]) -> list[dict[str, Any]]:
    return [{"group": p.parent.name} for p in paths]


@pytest.fixture
def image_store(
    chroma_client: Any, clip_embeddings: Any, demo_images_dir: Path
) -> Iterator[CLIPChroma]:
    paths = sorted(demo_images_dir.rglob("*.png"))
    name = f"lc-img-{uuid.uuid4().hex[:12]}"
    store = CLIPChroma(name, clip_embeddings, client=chroma_client)
    ids = store.add_images([str(p) for p in paths], _group_metadata(paths))
    assert len(ids) == len(paths)
    yield store
    chroma_client.delete_collection(name)


def test_images_are_stored_as_uris_and_metadata_not_base64(
    image_store: CLIPChroma, demo_images_dir: Path
) -> None:
    raw = image_store.index.collection.get(include=["documents", "metadatas", "uris"])
    assert set(raw["documents"] or []) == {None}
    assert {Path(u) for u in raw["uris"] or []} == set(demo_images_dir.rglob("*.png"))
    meta = (raw["metadatas"] or [{}])[0]
    assert meta["mime"] == "image/png" and meta["modality"] == "image"
    assert meta["group"] in {"shapes", "digits", "animals"}


def test_text_finds_the_described_images(image_store: CLIPChroma) -> None:
    for query, stem in [
        ("a large blue cross", "shapes/blue-cross-large-"),
        ("a large yellow star", "shapes/yellow-star-large-"),
    ]:
        docs = image_store.similarity_search(query, k=3)
        assert docs[0].page_content.startswith(f"image: {stem}"), [d.page_content for d in docs]
        assert docs[0].page_content.endswith("(image/png, 64x64)")


def test_scores_are_similarities_and_relevance_is_in_0_1(image_store: CLIPChroma) -> None:
    with_score = image_store.similarity_search_with_score("a small red circle", k=5)
    relevance = image_store.similarity_search_with_relevance_scores("a small red circle", k=5)
    scores = [s for _, s in with_score]
    assert scores == sorted(scores, reverse=True)
    assert [d.id for d, _ in relevance] == [d.id for d, _ in with_score]
    for (_, sim), (_, rel) in zip(with_score, relevance, strict=True):
        assert 0.0 <= rel <= 1.0
        assert rel == pytest.approx((1 + sim) / 2)


def test_search_by_image_finds_itself_with_top_relevance(
    image_store: CLIPChroma, demo_image: Any
) -> None:
    probe = str(demo_image("shapes", "blue-cross-large"))
    docs = image_store.similarity_search_by_image(probe, k=3)
    assert docs[0].metadata["uri"] == probe
    scored = image_store.similarity_search_by_image_with_relevance_score(probe, k=3)
    assert scored[0][0].metadata["uri"] == probe
    assert scored[0][1] == pytest.approx(1.0, abs=1e-3)
    assert all(0.0 <= r <= 1.0 for _, r in scored)
    assert scored[0][1] > scored[1][1] >= scored[2][1]


def test_filters_apply_to_every_search(image_store: CLIPChroma, demo_image: Any) -> None:
    probe = str(demo_image("digits", "seven"))
    shapes = {"group": "shapes"}
    for docs in (
        image_store.similarity_search("a handwritten seven", k=4, filter=shapes),
        image_store.similarity_search_by_image(probe, k=4, filter=shapes),
        image_store.max_marginal_relevance_search("a handwritten seven", k=4, filter=shapes),
    ):
        assert len(docs) == 4
        assert {d.metadata["group"] for d in docs} == {"shapes"}


def test_mmr_trades_relevance_for_diversity(image_store: CLIPChroma, demo_image: Any) -> None:
    seven = str(demo_image("digits", "seven"))
    image_store.add_images([seven, seven], ids=["copy-a", "copy-b"])  # same vector, twice
    plain = image_store.similarity_search_by_image(seven, k=3)
    assert {"copy-a", "copy-b"} <= {d.id for d in plain}
    vector = image_store.embeddings.embed_image([seven])[0]  # type: ignore[attr-defined]
    diverse = image_store.max_marginal_relevance_search_by_vector(vector, k=3, lambda_mult=0.3)
    ids = [d.id for d in diverse]
    assert len(set(ids)) == 3
    assert len({"copy-a", "copy-b"} & set(ids)) <= 1
    assert len({d.metadata["uri"] for d in diverse}) == 3


def test_get_by_ids_and_delete_images(image_store: CLIPChroma, demo_image: Any) -> None:
    probe = str(demo_image("animals", "cat"))
    (id_,) = image_store.add_images([probe], [{"group": "animals"}], ids=["the-cat"])
    (doc,) = image_store.get_by_ids([id_, "missing"])
    assert doc.id == "the-cat" and doc.metadata["uri"] == probe
    assert doc.page_content == "image: animals/cat-000.png (image/png, 64x64)"
    before = image_store.index.count()
    image_store.delete([id_])
    assert image_store.get_by_ids([id_]) == []
    assert image_store.index.count() == before - 1
    image_store.delete(filter={"group": "animals"})
    assert (
        image_store.similarity_search("a silhouette of a cat", k=50, filter={"group": "animals"})
        == []
    )


def test_texts_and_images_share_one_clip_store(image_store: CLIPChroma) -> None:
    ids = image_store.add_texts(["notes about the digit seven"], [{"group": "notes"}])
    docs = image_store.similarity_search("notes about the digit seven", k=1)
    assert docs[0].id == ids[0]
    assert docs[0].page_content == "notes about the digit seven"
    assert docs[0].metadata == {"group": "notes"}


def test_unreadable_images_are_skipped_and_logged(
    chroma_client: Any, clip_embeddings: Any, demo_image: Any, tmp_path: Path, caplog: Any
) -> None:
    store = CLIPChroma(f"lc-bad-{uuid.uuid4().hex[:12]}", clip_embeddings, client=chroma_client)
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"not an image")
    good = str(demo_image("digits", "two"))
    with caplog.at_level("WARNING"):
        ids = store.add_images([str(broken), good])
    assert len(ids) == 1 and store.get_by_ids(ids)[0].metadata["uri"] == good
    assert "broken.png" in caplog.text


def test_a_persisted_store_reopens_and_refuses_another_model(
    clip_embeddings: Any, demo_image: Any, tmp_path: Path
) -> None:
    from langchain_core.embeddings import DeterministicFakeEmbedding

    from clip_multimodal.errors import IncompatibleIndexError

    folder = str(tmp_path / "store")
    CLIPChroma("photos", clip_embeddings, persist_directory=folder).add_images(
        [str(demo_image("digits", "seven"))]
    )
    again = CLIPChroma("photos", clip_embeddings, persist_directory=folder)
    assert (
        again.similarity_search("a handwritten seven", k=1)[0]
        .metadata["uri"]
        .endswith("seven-000.png")
    )
    with pytest.raises(IncompatibleIndexError, match="built with model"):
        CLIPChroma("photos", DeterministicFakeEmbedding(size=6), persist_directory=folder)


def test_an_existing_index_is_a_store(lc_demo_index: Any) -> None:
    store = CLIPChroma(index=lc_demo_index)
    docs = store.similarity_search("a silhouette of a zebra", k=1)
    assert Path(docs[0].metadata["uri"]).name.startswith("zebra-")


def test_images_need_clip_embeddings(chroma_client: Any, demo_image: Any) -> None:
    from langchain_core.embeddings import DeterministicFakeEmbedding

    store = CLIPChroma(
        f"lc-txt-{uuid.uuid4().hex[:12]}", DeterministicFakeEmbedding(size=6), client=chroma_client
    )
    with pytest.raises(TypeError, match="CLIPEmbeddings"):
        store.add_images([str(demo_image("digits", "two"))])
    with pytest.raises(TypeError, match="CLIPEmbeddings"):
        store.similarity_search_by_image(str(demo_image("digits", "two")))


def test_an_embedding_function_is_required() -> None:
    with pytest.raises(ValueError, match="needs an embedding_function"):
        CLIPChroma("nothing")


# -- LangChain plumbing on texts ----------------------------------------------------------


def test_constructors_and_retrievers_work_on_texts(tmp_path: Path) -> None:
    from langchain_core.documents import Document
    from langchain_core.embeddings import DeterministicFakeEmbedding

    fake = DeterministicFakeEmbedding(size=8)
    folder = str(tmp_path / "texts")
    store = CLIPChroma.from_texts(
        ["foo", "bar", "baz"],
        fake,
        [{"n": 1}, {"n": 2}, {"n": 3}],
        ids=["a", "b", "c"],
        collection_name="texts",
        persist_directory=folder,
    )
    assert [d.id for d in store.get_by_ids(["c", "a"])] == ["c", "a"]
    more = CLIPChroma.from_documents(
        [Document("qux", metadata={"n": 4}, id="d")],
        fake,
        collection_name="texts",
        persist_directory=folder,
    )
    assert more.index.count() == 4

    exact = store.as_retriever(
        search_type="similarity_score_threshold", search_kwargs={"score_threshold": 0.999}
    ).invoke("bar")
    assert [d.page_content for d in exact] == ["bar"]
    mmr = store.as_retriever(search_type="mmr", search_kwargs={"k": 2, "fetch_k": 4})
    assert len({d.id for d in mmr.invoke("foo")}) == 2
    filtered = store.as_retriever(search_kwargs={"k": 4, "filter": {"n": {"$gte": 3}}})
    assert {d.page_content for d in filtered.invoke("foo")} == {"baz", "qux"}
    assert store.similarity_search("foo", k=4, where_document={"$contains": "ba"})[
        0
    ].page_content in {"bar", "baz"}


def test_unknown_arguments_and_empty_deletes(tmp_path: Path) -> None:
    from langchain_core.embeddings import DeterministicFakeEmbedding

    store = CLIPChroma("texts", DeterministicFakeEmbedding(size=8), str(tmp_path / "s"))
    store.add_texts(["foo"], ids=["a"])
    with pytest.raises(TypeError, match="unexpected arguments \\['wehre'\\]"):
        store.similarity_search("foo", wehre={"n": 1})
    assert store.delete([]) is True
    with pytest.raises(ValueError, match="pass ids or where"):
        store.delete()
    assert store.get_by_ids(["a"])[0].page_content == "foo"


def test_without_a_location_the_store_is_in_memory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from langchain_core.embeddings import DeterministicFakeEmbedding

    monkeypatch.setenv("CLIP_MULTIMODAL_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.chdir(tmp_path)
    store = CLIPChroma(f"mem-{uuid.uuid4().hex[:12]}", DeterministicFakeEmbedding(size=8))
    store.add_texts(["foo", "bar"], ids=["a", "b"])
    assert store.similarity_search("bar", k=1)[0].id == "b"
    assert list(tmp_path.iterdir()) == []  # nothing written anywhere
