"""ImageIndex.writer(): records embedded elsewhere, stored on real Chroma (both clients)."""

from __future__ import annotations

import io
import uuid
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from clip_multimodal.errors import ReadOnlyIndexError
from clip_multimodal.index import ImageIndex, ImageRecord, read_image_source
from clip_multimodal.index._records import RUN_KEY
from clip_multimodal.testing import FakeEncoder


def _name() -> str:
    return f"writer-{uuid.uuid4().hex[:12]}"  # unique per test: the HTTP server is shared


def _images(folder: Path, n: int) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(n):
        buf = io.BytesIO()
        Image.new("RGB", (20 + i, 12), (i * 40 % 256, 90, 200 - i * 20)).save(buf, "PNG")
        path = folder / f"{i}.png"
        path.write_bytes(buf.getvalue())
        paths.append(path)
    return paths


def test_writer_stores_what_add_would(chroma_client: Any, tmp_path: Path) -> None:
    encoder = FakeEncoder()
    index = ImageIndex(encoder, _name(), client=chroma_client)
    paths = _images(tmp_path / "img", 5)
    sources = [read_image_source(p) for p in paths]
    vectors = encoder.embed_images([s.payload for s in sources]) * 3.0  # not unit length
    with index.writer() as writer:
        writer.put(
            ImageRecord.from_source(s, v) for s, v in zip(sources[:3], vectors[:3], strict=True)
        )
        writer.put([])  # an empty batch is ignored
        writer.put(
            ImageRecord.from_source(s, v) for s, v in zip(sources[3:], vectors[3:], strict=True)
        )
    assert index.count() == len(paths)
    # add() finds every record stored as it would have written it: nothing to do.
    again = index.add(paths)
    assert again.unchanged == len(paths) and again.added == again.updated == 0
    assert again.embedded == 0
    reference = ImageIndex(encoder, _name(), client=chroma_client)
    reference.add(paths)
    ids = [s.sha256 for s in sources]
    ours = index.get(ids, include_embeddings=True)
    theirs = reference.get(ids, include_embeddings=True)
    assert [r.id for r in ours] == ids
    for mine, ref in zip(ours, theirs, strict=True):
        written_by = {k: v for k, v in ref.metadata.items() if k != RUN_KEY}  # add's own run
        assert mine.metadata == written_by and mine.uri == ref.uri == str(paths[ids.index(mine.id)])
        assert mine.embedding is not None and ref.embedding is not None
        np.testing.assert_allclose(mine.embedding, ref.embedding, atol=1e-6)  # normalized


def test_writer_refuses_a_read_only_index_before_the_block_runs(
    chroma_client: Any, tmp_path: Path
) -> None:
    encoder = FakeEncoder()
    name = _name()
    ImageIndex(encoder, name, client=chroma_client)
    index = ImageIndex.open_read_only(encoder, name, client=chroma_client)
    ran = False
    with pytest.raises(ReadOnlyIndexError, match=name), index.writer():
        ran = True  # the caller's embedding would happen here
    assert not ran and index.count() == 0


def test_writer_rejects_vectors_of_another_dimension(chroma_client: Any, tmp_path: Path) -> None:
    encoder = FakeEncoder(dim=32)
    index = ImageIndex(encoder, _name(), client=chroma_client)
    source = read_image_source(_images(tmp_path / "img", 1)[0])
    with pytest.raises(ValueError, match="dim 32"), index.writer() as writer:
        writer.put([ImageRecord.from_source(source, np.ones(16, np.float32))])
    assert index.count() == 0


def test_a_failed_write_is_raised_on_leaving(chroma_client: Any, tmp_path: Path) -> None:
    encoder = FakeEncoder()
    index = ImageIndex(encoder, _name(), client=chroma_client)
    vector = np.ones(encoder.dim, np.float32)
    bad = {"nested": {"not": "allowed"}}  # Chroma refuses dict metadata values
    with pytest.raises(ValueError, match="metadata value"), index.writer() as writer:
        writer.put([ImageRecord("a", vector, bad)])
    assert index.count() == 0


def test_the_vector_check_keeps_unit_vectors_as_given_and_normalizes_the_rest(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # The writer's check (`unit_vectors`) meets an encoder's output, unit already.
    from clip_multimodal.index import _search

    raw = np.random.default_rng(0).standard_normal((2, 32)).astype(np.float32)
    unit = raw / np.linalg.norm(raw, axis=1, keepdims=True)
    divided: list[int] = []
    real_maximum = np.maximum

    def maximum(*args: Any, **kwargs: Any) -> Any:
        divided.append(1)  # the clamp of the divisor: only a division computes it
        return real_maximum(*args, **kwargs)

    monkeypatch.setattr(_search.np, "maximum", maximum)
    kept = _search.unit_vectors(unit, 2, FakeEncoder())
    assert np.array_equal(kept, unit) and divided == []  # normalized once, upstream
    scaled = _search.unit_vectors(unit * 3.0, 2, FakeEncoder())
    np.testing.assert_allclose(np.linalg.norm(scaled, axis=1), 1.0, atol=1e-6)
    assert divided == [1]
