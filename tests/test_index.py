"""ImageIndex against real Chroma, embedded and over HTTP (the `chroma_client` fixture).

The fake encoder isolates the index's own logic (dedup, reports, filters, batching); the
demo model checks that search finds the right content.
"""

from __future__ import annotations

import base64
import io
import socket
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from clip_multimodal.errors import IncompatibleIndexError, IndexUnavailableError
from clip_multimodal.index import ImageIndex, IndexReport, SearchHit, default_data_dir
from clip_multimodal.index._store import DIM_KEY, MODEL_ID_KEY
from clip_multimodal.testing import FakeEncoder


def _name() -> str:
    return f"t-{uuid.uuid4().hex[:12]}"  # unique per test: the HTTP server is shared


def _png(color: tuple[int, int, int], size: tuple[int, int] = (24, 16)) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", size, color).save(buf, format="PNG")
    return buf.getvalue()


def _write_images(folder: Path, n: int, start: int = 0) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(start)
    paths = []
    for i in range(start, start + n):
        path = folder / f"img-{i:03d}.png"
        pixels = rng.integers(0, 256, (16, 16, 3), dtype=np.uint8)
        Image.fromarray(pixels).save(path)
        paths.append(path)
    return paths


@pytest.fixture
def index(chroma_client: Any) -> ImageIndex:
    return ImageIndex(FakeEncoder(), _name(), client=chroma_client)


# -- adding ------------------------------------------------------------------------------


def test_adding_the_same_images_twice_is_a_no_op(index: ImageIndex, tmp_path: Path) -> None:
    paths = _write_images(tmp_path / "imgs", 3)
    first = index.add([str(p) for p in paths])
    encoder = index.encoder
    assert isinstance(encoder, FakeEncoder)
    calls_after_first = list(encoder.calls)

    second = index.add([str(p) for p in paths])

    assert (first.added, first.unchanged, first.embedded) == (3, 0, 3)
    assert (second.added, second.unchanged, second.embedded) == (0, 3, 0)
    assert encoder.calls == calls_after_first  # nothing went through the model again
    assert second.ids == first.ids
    assert index.count() == 3


def test_ids_default_to_the_content_hash(index: ImageIndex, tmp_path: Path) -> None:
    import hashlib

    data = _png((200, 10, 10))
    path = tmp_path / "red.png"
    path.write_bytes(data)

    report = index.add([path, data])  # the same content twice: one record

    assert report.ids == [hashlib.sha256(data).hexdigest()] * 2
    assert (report.added, report.unchanged, report.embedded) == (1, 1, 1)
    assert index.count() == 1


def test_records_keep_uri_and_metadata_but_never_bytes(index: ImageIndex, tmp_path: Path) -> None:
    data = _png((10, 200, 10), size=(30, 20))
    path = tmp_path / "green.png"
    path.write_bytes(data)

    report = index.add([path], metadatas=[{"label": "green", "rank": 3}])
    (record,) = index.get([report.ids[0] or ""], include_embeddings=True)

    assert record.uri == str(path)
    meta = dict(record.metadata)
    assert meta["uri"] == str(path)
    assert meta["mime"] == "image/png"
    assert (meta["width"], meta["height"], meta["size"]) == (30, 20, len(data))
    assert meta["mtime_ns"] == path.stat().st_mtime_ns
    assert meta["mtime"] == pytest.approx(path.stat().st_mtime)
    assert meta["modality"] == "image"
    assert (meta["label"], meta["rank"]) == ("green", 3)
    assert record.embedding is not None
    assert np.allclose(record.embedding, index.encoder.embed_images([data])[0], atol=1e-6)
    raw = index.collection.get(ids=[record.id], include=["documents", "metadatas", "uris"])
    assert raw["documents"] == [None]  # no base64 page content
    assert raw["uris"] == [str(path)]
    assert all(len(str(v)) < 200 for v in raw["metadatas"][0].values())


def test_in_memory_images_have_no_uri(index: ImageIndex) -> None:
    pil = Image.new("RGB", (8, 8), (1, 2, 3))
    array = np.full((8, 8, 3), 250, np.uint8)
    b64 = base64.b64encode(_png((5, 5, 250))).decode()

    report = index.add([pil, array, b64])
    records = index.get([i or "" for i in report.ids])

    assert report.added == 3 and not report.failed
    assert [r.uri for r in records] == [None, None, None]
    assert records[0].metadata["mime"] == "application/octet-stream"
    assert records[2].metadata["mime"] == "image/png"


def test_failed_items_are_reported_and_the_rest_is_indexed(
    index: ImageIndex, tmp_path: Path
) -> None:
    good = _write_images(tmp_path, 2)
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"\x89PNG\r\n\x1a\n" + b"\x00" * 40)  # a PNG header, then junk
    missing = tmp_path / "missing.png"

    report = index.add([good[0], b"not an image", broken, missing, good[1]])

    assert report.added == 2
    assert index.count() == 2
    assert [i is None for i in report.ids] == [False, True, True, True, False]
    sources = [f.source for f in report.failed]
    assert sources == ["<bytes: 12 B>", str(broken), str(missing)]
    assert all(f.reason for f in report.failed)
    assert "no such file" in report.failed[2].reason


def test_explicit_ids_update_changed_content(index: ImageIndex) -> None:
    index.add([_png((1, 1, 1))], ids=["a"])
    report = index.add([_png((250, 250, 250))], ids=["a"])

    assert (report.added, report.updated, report.embedded) == (0, 1, 1)
    (record,) = index.get(["a"], include_embeddings=True)
    assert record.embedding is not None
    expected = index.encoder.embed_images([_png((250, 250, 250))])[0]
    assert np.allclose(record.embedding, expected, atol=1e-6)
    assert index.count() == 1


def test_reserved_metadata_keys_are_refused_per_item(index: ImageIndex) -> None:
    report = index.add([_png((1, 2, 3)), _png((4, 5, 6))], metadatas=[{"uri": "x"}, None])

    assert report.added == 1
    assert "reserved" in report.failed[0].reason


def test_writes_are_chunked_by_the_client_max_batch_size(
    index: ImageIndex, monkeypatch: pytest.MonkeyPatch
) -> None:
    sizes: list[int] = []
    real_add = index.collection.add

    def spy(**kwargs: Any) -> None:
        sizes.append(len(kwargs["ids"]))
        real_add(**kwargs)

    monkeypatch.setattr(index.collection, "add", spy)
    monkeypatch.setattr(index, "_max_batch", 3)
    vectors = np.random.default_rng(0).standard_normal((8, index.encoder.dim))

    index.add_embeddings(vectors, [f"v{i}" for i in range(8)])

    assert sizes == [3, 3, 2]
    assert index.count() == 8


def test_embedding_the_next_chunk_overlaps_writing_the_last(
    chroma_client: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    events: list[tuple[str, float]] = []

    class TimedEncoder(FakeEncoder):
        def try_embed_images(self, images: Any) -> Any:
            events.append(("embed-start", time.perf_counter()))
            return super().try_embed_images(images)

    index = ImageIndex(TimedEncoder(), _name(), client=chroma_client, chunk_size=2)
    index._write_size = 2  # one write per chunk
    real_write = index._write

    def slow_write(batch: Any) -> None:
        time.sleep(0.3)
        real_write(batch)
        events.append(("write-end", time.perf_counter()))

    monkeypatch.setattr(index, "_write", slow_write)
    index.add([_png((i * 40, 0, 0)) for i in range(4)])  # two chunks

    starts = [t for kind, t in events if kind == "embed-start"]
    ends = [t for kind, t in events if kind == "write-end"]
    assert len(starts) == 2 and len(ends) == 2
    assert starts[1] < ends[0]  # chunk 2 was embedded while chunk 1 was being written
    assert index.count() == 4


def test_an_image_repeated_across_chunks_is_stored_once(chroma_client: Any) -> None:
    index = ImageIndex(FakeEncoder(), _name(), client=chroma_client, chunk_size=2)
    same = _png((7, 7, 7))

    report = index.add([same, _png((1, 1, 1)), _png((2, 2, 2)), _png((3, 3, 3)), same])

    assert (report.added, report.unchanged, report.embedded) == (4, 1, 4)
    assert report.ids[0] == report.ids[4]
    assert index.count() == 4


def test_chunks_are_gathered_into_large_writes_and_copies_embed_once(
    chroma_client: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    index = ImageIndex(FakeEncoder(), _name(), client=chroma_client, chunk_size=2)
    sizes: list[int] = []
    real_add = index.collection.add

    def spy(**kwargs: Any) -> None:
        sizes.append(len(kwargs["ids"]))
        real_add(**kwargs)

    monkeypatch.setattr(index.collection, "add", spy)
    same = _png((9, 9, 9))
    images = [same] + [_png((i * 20, 0, 0)) for i in range(8)] + [same]

    report = index.add(images, ids=[f"id{i}" for i in range(10)])

    assert sizes == [10]  # five chunks, one write
    assert (report.added, report.embedded) == (10, 9)  # the copy in the last chunk reused
    assert index.count() == 10


def test_repeated_explicit_ids_are_refused(index: ImageIndex) -> None:
    with pytest.raises(ValueError, match=r"unique.*\['a'\]"):
        index.add([_png((1, 1, 1)), _png((2, 2, 2))], ids=["a", "a"])
    assert index.count() == 0


def test_the_writer_merges_chunks_that_wait_for_a_slow_store() -> None:
    from clip_multimodal.index._writer import BackgroundWriter

    writes: list[list[int]] = []

    def slow_write(items: list[int]) -> None:
        time.sleep(0.05)
        writes.append(items)

    with BackgroundWriter[list[int]](slow_write, lambda a, b: a + b) as writer:
        for i in range(10):
            writer.put([i])

    assert [i for w in writes for i in w] == list(range(10))  # all of them, in order
    assert len(writes) < 10  # fewer, larger writes


def test_a_failed_write_is_raised_to_the_producer() -> None:
    from clip_multimodal.index._writer import BackgroundWriter

    def failing(item: int) -> None:
        raise RuntimeError(f"store down at {item}")

    def produce() -> None:
        with BackgroundWriter[int](failing) as writer:
            for i in range(20):
                writer.put(i)
                time.sleep(0.01)

    with pytest.raises(RuntimeError, match="store down at 0"):
        produce()


def test_add_embeddings_normalizes_and_checks_the_dimension(index: ImageIndex) -> None:
    index.add_embeddings(np.array([[3.0] + [0.0] * 31]), ["x"], uris=["http://example.com/x.png"])

    (record,) = index.get(["x"], include_embeddings=True)
    assert record.embedding is not None and np.isclose(np.linalg.norm(record.embedding), 1.0)
    assert record.uri == "http://example.com/x.png"
    with pytest.raises(ValueError, match="dim 32"):
        index.add_embeddings(np.ones((1, 8)), ["y"])


def test_add_embeddings_can_replace_and_tag_text_records(index: ImageIndex) -> None:
    first, second = np.eye(2, 32, dtype=np.float32)
    index.add_embeddings([first], ["t"], documents=["old caption"], modality="text")
    index.add_embeddings([second], ["t"], documents=["ignored"])  # kept: replace is off
    kept = index.get(["t"], include_embeddings=True)[0]
    index.add_embeddings([second], ["t"], documents=["new caption"], modality="text", replace=True)
    replaced = index.get(["t"], include_embeddings=True)[0]

    assert kept.document == "old caption" and kept.metadata["modality"] == "text"
    assert kept.embedding is not None and np.allclose(kept.embedding, first)
    assert replaced.document == "new caption"
    assert replaced.embedding is not None and np.allclose(replaced.embedding, second)
    assert index.count() == 1


def test_concurrent_adds_from_threads_leave_no_duplicates(index: ImageIndex) -> None:
    images = [_png((i * 20, 100, 50)) for i in range(10)]
    errors: list[BaseException] = []

    def worker(offset: int) -> None:
        try:
            index.add(images[offset:] + images[:offset])  # every thread adds all 10
        except BaseException as exc:  # pragma: no cover - surfaced below
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()

    assert not errors
    assert index.count() == 10
    got = index.collection.get(include=["metadatas"])
    assert len({m["sha256"] for m in got["metadatas"]}) == 10


# -- model consistency -------------------------------------------------------------------


def test_another_model_is_refused_and_nothing_is_written(chroma_client: Any) -> None:
    name = _name()
    built = ImageIndex(FakeEncoder(dim=32, model_id="model-a"), name, client=chroma_client)
    built.add([_png((9, 9, 9))])

    with pytest.raises(IncompatibleIndexError) as info:
        ImageIndex(FakeEncoder(dim=16, model_id="model-b"), name, client=chroma_client)
    message = str(info.value)
    assert "model-a (dim 32)" in message and "model-b (dim 16)" in message
    assert name in message and "new collection name" in message
    with pytest.raises(IncompatibleIndexError, match="model-c"):
        ImageIndex(FakeEncoder(dim=32, model_id="model-c"), name, client=chroma_client)

    collection = chroma_client.get_collection(name, embedding_function=None)
    assert collection.metadata[MODEL_ID_KEY] == "model-a"
    assert collection.metadata[DIM_KEY] == 32
    assert collection.count() == 1
    reopened = ImageIndex(FakeEncoder(dim=32, model_id="model-a"), name, client=chroma_client)
    assert reopened.count() == 1


def test_a_foreign_non_empty_collection_is_refused(chroma_client: Any) -> None:
    name = _name()
    foreign = chroma_client.create_collection(name, embedding_function=None)
    foreign.add(ids=["x"], embeddings=[[0.1] * 32])

    with pytest.raises(IncompatibleIndexError, match="did not write"):
        ImageIndex(FakeEncoder(), name, client=chroma_client)


def test_a_non_cosine_collection_is_refused(chroma_client: Any) -> None:
    name = _name()
    chroma_client.create_collection(
        name, embedding_function=None, configuration={"hnsw": {"space": "l2"}}
    )
    with pytest.raises(IncompatibleIndexError, match="cosine"):
        ImageIndex(FakeEncoder(), name, client=chroma_client)


# -- searching ---------------------------------------------------------------------------


def test_scores_are_cosine_similarities_best_first(index: ImageIndex) -> None:
    vectors = np.random.default_rng(1).standard_normal((6, 32)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    index.add_embeddings(vectors, [f"v{i}" for i in range(6)])
    query = vectors[2] + 0.1 * vectors[4]

    hits = index.search_by_vector(query, k=6)

    expected = vectors @ (query / np.linalg.norm(query))
    assert [h.id for h in hits] == [f"v{i}" for i in np.argsort(-expected)]
    assert np.allclose([h.score for h in hits], np.sort(expected)[::-1], atol=1e-4)
    assert all(isinstance(h, SearchHit) for h in hits)


def test_query_type_auto_tells_texts_from_images(index: ImageIndex, tmp_path: Path) -> None:
    (path,) = _write_images(tmp_path, 1)
    index.add([path])
    encoder = index.encoder
    assert isinstance(encoder, FakeEncoder)

    encoder.calls.clear()
    by_path = index.search(str(path), k=1)
    by_text = index.search("a photo of a cat", k=1)
    forced = index.search(str(path), k=1, query_type="text")

    assert [c[0] for c in encoder.calls] == ["embed_images", "embed_texts", "embed_texts"]
    assert by_path[0].uri == str(path) and by_path[0].score == pytest.approx(1.0, abs=1e-5)
    assert by_text and forced


def test_where_filters_on_metadata_and_documents(index: ImageIndex) -> None:
    images = [_png((i * 50, 10, 10)) for i in range(4)]
    index.add(
        images,
        metadatas=[{"kind": "cat"}, {"kind": "dog"}, {"kind": "cat"}, {"kind": "dog"}],
        documents=["a tabby cat", "a brown dog", "a black cat", None],
    )

    cats = index.search("anything", k=10, where={"kind": "cat"})
    black = index.search("anything", k=10, where_document={"$contains": "black"})
    dogs_with_text = index.search(
        "anything", k=10, where={"kind": "dog"}, where_document={"$contains": "dog"}
    )

    assert sorted(h.metadata["kind"] for h in cats) == ["cat", "cat"]
    assert len(black) == 1 and black[0].metadata["kind"] == "cat"
    assert black[0].document == "a black cat"
    assert index.get([black[0].id])[0].document == "a black cat"
    assert len(dogs_with_text) == 1


def test_max_marginal_relevance_trades_relevance_for_diversity(index: ImageIndex) -> None:
    base = np.zeros((4, 32), np.float32)
    base[0, 0] = 1.0  # a, b, c: near-duplicates...
    base[1, :2] = [0.99, 0.14]
    base[2, :2] = [0.98, 0.2]
    base[3, :3] = [0.6, 0.0, 0.8]  # ...and d: different, still relevant
    index.add_embeddings(base, ["a", "b", "c", "d"])
    query = np.zeros(32, np.float32)
    query[[0, 2]] = [0.9, 0.436]
    relevance = (base / np.linalg.norm(base, axis=1, keepdims=True)) @ (
        query / np.linalg.norm(query)
    )
    assert relevance[1] > relevance[3] > relevance[2]  # plain search prefers b over d

    plain = index.search_by_vector(query, k=2)
    diverse = index.max_marginal_relevance_by_vector(query, k=2, fetch_k=4, lambda_mult=0.5)
    relevant = index.max_marginal_relevance_by_vector(query, k=2, fetch_k=4, lambda_mult=1.0)

    assert [h.id for h in plain] == ["a", "b"]
    assert [h.id for h in diverse] == ["a", "d"]
    assert [h.id for h in relevant] == ["a", "b"]
    assert diverse[1].score == pytest.approx(relevance[3], abs=1e-4)


def test_max_marginal_relevance_embeds_the_query(index: ImageIndex) -> None:
    index.add([_png((i * 60, 30, 30)) for i in range(3)])
    hits = index.max_marginal_relevance(_png((0, 30, 30)), k=2, fetch_k=3)
    assert len(hits) == 2 and hits[0].score == pytest.approx(1.0, abs=1e-5)


def test_get_delete_and_count(index: ImageIndex) -> None:
    report = index.add(
        [_png((i * 60, 0, 0)) for i in range(3)], metadatas=[{"n": 0}, {"n": 1}, {"n": 2}]
    )
    a, b, c = (i or "" for i in report.ids)

    assert [r.id for r in index.get([c, "nope", a])] == [c, a]
    index.delete([a])
    assert index.count() == 2
    index.delete(where={"n": 2})
    assert [r.id for r in index.get([a, b, c])] == [b]
    with pytest.raises(ValueError, match="ids or where"):
        index.delete()


def test_empty_index_search_returns_nothing(index: ImageIndex) -> None:
    assert index.search("anything") == []
    assert index.max_marginal_relevance("anything") == []


# -- where it lives ----------------------------------------------------------------------


def test_server_mode_by_host_and_port(chroma_server: tuple[str, int]) -> None:
    host, port = chroma_server
    name = _name()
    index = ImageIndex(FakeEncoder(), name, host=host, port=port)
    index.add([_png((3, 3, 3))])

    again = ImageIndex(FakeEncoder(), name, host=host, port=port)
    assert again.count() == 1


def test_an_unreachable_server_fails_fast_and_says_how_to_start_one() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed once the block ends: nothing listens there

    start = time.perf_counter()
    with pytest.raises(IndexUnavailableError) as info:
        ImageIndex(FakeEncoder(), "images", host="127.0.0.1", port=port)

    assert time.perf_counter() - start < 2.0
    assert f"127.0.0.1:{port}" in str(info.value)
    assert f"chroma run --path DIR --port {port}" in str(info.value)


def test_embedded_index_defaults_to_the_data_dir(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CLIP_MULTIMODAL_DATA_DIR", str(tmp_path / "data"))
    assert default_data_dir() == tmp_path / "data"

    ImageIndex(FakeEncoder(), "defaults").add([_png((1, 1, 1))])

    assert (tmp_path / "data" / "chroma").is_dir()
    assert ImageIndex(FakeEncoder(), "defaults", path=tmp_path / "data" / "chroma").count() == 1


def test_client_and_path_together_are_refused(chroma_client: Any, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="not several"):
        ImageIndex(FakeEncoder(), _name(), tmp_path, client=chroma_client)


def test_a_single_image_instead_of_a_list_is_refused(index: ImageIndex) -> None:
    with pytest.raises(TypeError, match=r"add\(\[image\]\)"):
        index.add("photo.jpg")  # type: ignore[arg-type]
    assert isinstance(IndexReport(), IndexReport)


# -- the demo model: search finds the right content ----------------------------------------


@pytest.fixture
def demo_index(chroma_client: Any, demo_encoder: Any, demo_images_dir: Path) -> ImageIndex:
    index = ImageIndex(demo_encoder, _name(), client=chroma_client)
    report = index.index_folder(demo_images_dir, progress=False)
    assert report.added > 0 and not report.failed
    return index


def test_text_search_finds_the_described_content(demo_index: ImageIndex) -> None:
    for query, content in [
        ("a handwritten seven", "digits/seven-"),
        ("a silhouette of a zebra", "animals/zebra-"),
        ("a large yellow star", "shapes/yellow-star-large-"),
        ("a large blue cross", "shapes/blue-cross-large-"),
    ]:
        hits = demo_index.search(query, k=3)
        uris = [h.uri or "" for h in hits]
        assert content in uris[0], (query, uris)
        assert hits[0].score > hits[2].score
    sevens = demo_index.search("a handwritten seven", k=3)
    assert all("/digits/" in (h.uri or "") for h in sevens)  # the right kind of image, too


def test_image_search_finds_the_image_itself_first(
    demo_index: ImageIndex, demo_images_dir: Path
) -> None:
    probes = [sorted((demo_images_dir / g).glob("*.png"))[1] for g in ("shapes", "digits")]
    for probe in probes:
        hits = demo_index.search(probe, k=3)
        assert hits[0].uri == str(probe)
        assert hits[0].score == pytest.approx(1.0, abs=1e-3)
        assert hits[1].score < hits[0].score
