"""ImageIndex.open_read_only over collections other tools wrote, on real Chroma (both clients).

Foreign collections record no model: Chroma's native embedding function (`uris`), or raw
vectors with a `uri` metadata key, in any distance space. Scores must come out as cosine
similarity whatever the space, and the collection must stay exactly as it was.
"""

from __future__ import annotations

import io
import uuid
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from clip_multimodal.errors import (
    IncompatibleIndexError,
    IndexNotFoundError,
    ReadOnlyIndexError,
)
from clip_multimodal.index import ImageIndex, describe_collection
from clip_multimodal.index._chroma import hits_from_query, similarity
from clip_multimodal.index._index import _chunk_size
from clip_multimodal.testing import FakeEncoder

DIM = 32


def _name() -> str:
    return f"ro-{uuid.uuid4().hex[:12]}"  # unique per test: the HTTP server is shared


def _unit(n: int, seed: int = 0) -> np.ndarray:
    vectors = np.random.default_rng(seed).standard_normal((n, DIM)).astype(np.float32)
    return np.asarray(vectors / np.linalg.norm(vectors, axis=1, keepdims=True), np.float32)


def _foreign(client: Any, vectors: np.ndarray, **create: Any) -> Any:
    """A collection as another tool leaves it: no model recorded, uris on even records, a
    `uri` metadata key on odd ones, documents on some."""
    collection = client.create_collection(_name(), embedding_function=None, **create)
    n = len(vectors)
    collection.add(
        ids=[f"r{i}" for i in range(n)],
        embeddings=vectors.tolist(),
        uris=[f"/photos/{i}.jpg" if i % 2 == 0 else None for i in range(n)],
        metadatas=[
            {"group": "even" if i % 2 == 0 else "odd", **({"uri": f"/m/{i}.png"} if i % 2 else {})}
            for i in range(n)
        ],
        documents=[f"photo number {i}" if i < 3 else None for i in range(n)],
    )
    return collection


def _snapshot(collection: Any) -> tuple[Any, ...]:
    got = collection.get(include=["metadatas", "uris", "documents", "embeddings"])
    embeddings = np.asarray(got["embeddings"]).tolist()
    return collection.metadata, got["ids"], got["metadatas"], got["uris"], embeddings


# -- scores by space ---------------------------------------------------------------------


@pytest.mark.parametrize(
    "create",
    [
        {},  # Chroma's default: l2, recorded in the configuration
        {"configuration": {"hnsw": {"space": "l2"}}},
        {"configuration": {"hnsw": {"space": "ip"}}},
        {"configuration": {"hnsw": {"space": "cosine"}}},
        {"metadata": {"hnsw:space": "ip"}},  # the legacy way to choose a space
    ],
    ids=["default", "l2", "ip", "cosine", "legacy-ip"],
)
def test_scores_are_cosine_similarity_in_every_space(chroma_client: Any, create: Any) -> None:
    vectors = _unit(8)
    collection = _foreign(chroma_client, vectors, **create)
    index = ImageIndex.open_read_only(FakeEncoder(DIM), collection.name, client=chroma_client)
    query = vectors[3] + 0.3 * vectors[5]

    hits = index.search_by_vector(query, k=8)

    expected = vectors @ (query / np.linalg.norm(query))
    assert [h.id for h in hits] == [f"r{i}" for i in np.argsort(-expected)]
    np.testing.assert_allclose([h.score for h in hits], np.sort(expected)[::-1], atol=1e-4)
    space = create.get("configuration", {}).get("hnsw", {}).get("space")
    assert index.space == (space or create.get("metadata", {}).get("hnsw:space") or "l2")


def test_similarity_converts_each_space() -> None:
    a, b = _unit(2)
    cos = float(a @ b)
    assert similarity(1.0 - cos, "cosine") == pytest.approx(cos)
    assert similarity(1.0 - cos, "ip") == pytest.approx(cos)
    assert similarity(float(np.sum((a - b) ** 2)), "l2") == pytest.approx(cos, abs=1e-6)
    with pytest.raises(ValueError, match="unknown Chroma space 'manhattan'"):
        similarity(0.1, "manhattan")
    result = {"ids": [["x"]], "distances": [[0.5]], "metadatas": [[None]], "uris": None}
    (hit,) = hits_from_query(result, "l2")
    assert hit.score == pytest.approx(0.75) and hit.metadata == {} and hit.uri is None


# -- what hits carry, and filters --------------------------------------------------------


def test_hits_carry_uris_metadata_and_documents(chroma_client: Any) -> None:
    vectors = _unit(6)
    collection = _foreign(chroma_client, vectors)
    index = ImageIndex.open_read_only(FakeEncoder(DIM), collection.name, client=chroma_client)

    hits = {h.id: h for h in index.search_by_vector(vectors[0], k=6)}

    assert hits["r0"].uri == "/photos/0.jpg"  # Chroma's uris field
    assert hits["r1"].uri == "/m/1.png"  # else the uri metadata key
    assert hits["r2"].document == "photo number 2" and hits["r4"].document is None
    assert hits["r4"].metadata == {"group": "even"}  # the raw metadata, as stored
    assert hits["r0"].score == pytest.approx(1.0, abs=1e-5)


def test_where_and_where_document_filter_a_foreign_collection(chroma_client: Any) -> None:
    vectors = _unit(6)
    collection = _foreign(chroma_client, vectors)
    index = ImageIndex.open_read_only(FakeEncoder(DIM), collection.name, client=chroma_client)

    odd = index.search_by_vector(vectors[0], k=6, where={"group": "odd"})
    captioned = index.search_by_vector(vectors[0], k=6, where_document={"$contains": "photo"})
    both = index.search("text", k=6, where={"group": "even"}, where_document={"$contains": "2"})

    assert sorted(h.id for h in odd) == ["r1", "r3", "r5"]
    assert sorted(h.id for h in captioned) == ["r0", "r1", "r2"]
    assert [h.id for h in both] == ["r2"]


def test_mmr_scores_stay_cosine_on_an_l2_collection(chroma_client: Any) -> None:
    vectors = _unit(6)
    collection = _foreign(chroma_client, vectors)
    index = ImageIndex.open_read_only(FakeEncoder(DIM), collection.name, client=chroma_client)

    hits = index.max_marginal_relevance_by_vector(vectors[2], k=3, fetch_k=6, lambda_mult=0.5)

    assert hits[0].id == "r2" and len(hits) == 3
    by_id = {f"r{i}": float(v @ vectors[2]) for i, v in enumerate(vectors)}
    np.testing.assert_allclose([h.score for h in hits], [by_id[h.id] for h in hits], atol=1e-4)


# -- the checks on opening ---------------------------------------------------------------


def test_a_collection_object_opens_without_a_location(chroma_client: Any) -> None:
    collection = _foreign(chroma_client, _unit(3))
    index = ImageIndex.open_read_only(FakeEncoder(DIM), collection)
    assert index.read_only and index.name == collection.name and index.count() == 3
    assert "read_only=True" in repr(index)
    with pytest.raises(ValueError, match="brings its own client"):
        ImageIndex.open_read_only(FakeEncoder(DIM), collection, client=chroma_client)


def test_another_dimension_is_refused_naming_both(chroma_client: Any) -> None:
    collection = _foreign(chroma_client, _unit(3))
    with pytest.raises(IncompatibleIndexError) as info:
        ImageIndex.open_read_only(FakeEncoder(16), collection.name, client=chroma_client)
    message = str(info.value)
    assert f"dim {DIM}" in message and "dim 16" in message and collection.name in message


def test_a_collection_recording_another_model_is_refused(chroma_client: Any) -> None:
    name = _name()
    ours = ImageIndex(FakeEncoder(DIM, model_id="model-a"), name, client=chroma_client)
    ours.add_embeddings(_unit(2), ["a", "b"])

    with pytest.raises(IncompatibleIndexError, match="built with model model-a"):
        ImageIndex.open_read_only(FakeEncoder(DIM, model_id="model-b"), name, client=chroma_client)
    same = ImageIndex.open_read_only(ours.encoder, name, client=chroma_client)
    assert same.space == "cosine" and same.search_by_vector(_unit(2)[0], k=1)[0].id == "a"


def test_an_empty_foreign_collection_opens_and_finds_nothing(chroma_client: Any) -> None:
    collection = chroma_client.create_collection(_name(), embedding_function=None)
    index = ImageIndex.open_read_only(FakeEncoder(DIM), collection.name, client=chroma_client)
    assert index.search("anything") == [] and index.space == "l2"


def test_a_missing_collection_is_named_and_not_created(chroma_client: Any) -> None:
    name = _name()
    with pytest.raises(IndexNotFoundError, match=name):
        ImageIndex.open_read_only(FakeEncoder(DIM), name, client=chroma_client)
    assert name not in [c.name for c in chroma_client.list_collections()]


# -- read-only: nothing changes ----------------------------------------------------------


def _png() -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (8, 8), (200, 10, 10)).save(buf, format="PNG")
    return buf.getvalue()


def test_writes_are_refused_and_the_collection_is_unchanged(
    chroma_client: Any, tmp_path: Path
) -> None:
    collection = _foreign(chroma_client, _unit(4))
    before = _snapshot(collection)
    index = ImageIndex.open_read_only(FakeEncoder(DIM), collection.name, client=chroma_client)
    index.search("a query", k=2)
    index.get(["r0", "r1"], include_embeddings=True)

    writes = [
        lambda: index.add([_png()]),
        lambda: index.add_embeddings(_unit(1), ["new"]),
        lambda: index.index_folder(tmp_path),
        lambda: index.delete(ids=["r0"]),
    ]
    for write in writes:
        with pytest.raises(ReadOnlyIndexError, match="opened read-only"):
            write()

    assert index.encoder.calls == [("embed_texts", 1)]  # type: ignore[attr-defined]
    after = chroma_client.get_collection(collection.name, embedding_function=None)
    assert _snapshot(after) == before
    assert after.metadata is None  # no model recorded on someone else's collection


# -- Chroma's native embedding function, with the real demo model ------------------------


def test_a_native_collection_is_searched_by_content(
    chroma_client: Any, demo_encoder: Any, demo_images_dir: Path
) -> None:
    from clip_multimodal.chroma import CLIPEmbeddingFunction, URILoader
    from clip_multimodal.datasets import digit_query

    digits = sorted((demo_images_dir / "digits").glob("*.png"))[:8]
    native = chroma_client.create_collection(
        _name(),
        embedding_function=CLIPEmbeddingFunction(encoder=demo_encoder),
        data_loader=URILoader(),
    )
    native.add(ids=[p.stem for p in digits], uris=[str(p) for p in digits])
    seven = next(p for p in digits if p.name.startswith("seven"))

    index = ImageIndex.open_read_only(demo_encoder, native.name, client=chroma_client)
    hit = index.search(digit_query("seven"), k=1)[0]
    by_image = index.search(str(seven), k=1)[0]

    assert hit.uri is not None and Path(hit.uri).name.startswith("seven-")
    assert by_image.id == seven.stem and by_image.score == pytest.approx(1.0, abs=1e-3)


# -- describe_collection -----------------------------------------------------------------


def test_describe_collection_reports_ours_foreign_and_missing(chroma_client: Any) -> None:
    name = _name()
    ImageIndex(FakeEncoder(DIM, model_id="model-a"), name, client=chroma_client).add_embeddings(
        _unit(2), ["a", "b"]
    )
    foreign = _foreign(chroma_client, _unit(3), configuration={"hnsw": {"space": "ip"}})

    ours = describe_collection(name, client=chroma_client)
    theirs = describe_collection(foreign.name, client=chroma_client)

    assert ours is not None and theirs is not None
    assert (ours.count, ours.model_id, ours.dim, ours.space) == (2, "model-a", DIM, "cosine")
    assert (theirs.count, theirs.model_id, theirs.dim, theirs.space) == (3, None, DIM, "ip")
    assert describe_collection(_name(), client=chroma_client) is None
    with pytest.raises(ValueError, match="not several"):
        describe_collection(name, "/tmp/x", client=chroma_client)


# -- the default chunk follows the encoder's batch ---------------------------------------


class _BatchedFake(FakeEncoder):
    def __init__(self, batch_size: int) -> None:
        super().__init__(DIM)
        self.batch_size = batch_size


def _distinct_pngs(n: int) -> list[bytes]:
    out = []
    for i in range(n):
        buf = io.BytesIO()
        Image.new("RGB", (4, 4), (i % 256, i // 256, 7)).save(buf, format="PNG")
        out.append(buf.getvalue())
    return out


@pytest.mark.parametrize(("batch", "chunks"), [(100, [100, 50]), (8, [64, 64, 22])])
def test_default_chunks_follow_the_encoder_batch(
    chroma_client: Any, batch: int, chunks: list[int]
) -> None:
    encoder = _BatchedFake(batch)
    index = ImageIndex(encoder, _name(), client=chroma_client)
    report = index.add(_distinct_pngs(150))
    assert report.added == 150
    assert [n for method, n in encoder.calls if method == "embed_images"] == chunks


def test_chunk_size_bounds_and_the_explicit_option() -> None:
    assert _chunk_size(FakeEncoder(), None) == 64  # no batch_size: 64
    assert _chunk_size(_BatchedFake(256), None) == 256  # a GPU batch
    assert _chunk_size(_BatchedFake(4096), None) == 512  # capped: a chunk is held in memory
    assert _chunk_size(_BatchedFake(256), 7) == 7
    with pytest.raises(ValueError, match="at least 1"):
        _chunk_size(FakeEncoder(), 0)
