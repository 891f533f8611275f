"""index_folder: incremental sync (touch, modify, delete, rename, copy), embedded and HTTP."""

from __future__ import annotations

import os
import shutil
import time
import uuid
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from clip_multimodal.index import ImageIndex, IndexReport
from clip_multimodal.index._sync import file_id
from clip_multimodal.testing import FakeEncoder


def _write_image(path: Path, seed: int) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    pixels = np.random.default_rng(seed).integers(0, 256, (16, 16, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(path)
    return path


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    root = tmp_path / "photos"
    for i in range(4):
        _write_image(root / f"img-{i}.png", seed=i)
    _write_image(root / "sub" / "deep.jpg", seed=10)
    (root / "notes.txt").write_text("not an image")
    return root


@pytest.fixture
def index(chroma_client: Any) -> ImageIndex:
    return ImageIndex(FakeEncoder(), f"s-{uuid.uuid4().hex[:12]}", client=chroma_client)


def _counts(report: IndexReport) -> tuple[int, int, int, int, int, int]:
    return (
        report.added,
        report.updated,
        report.unchanged,
        report.removed,
        len(report.failed),
        report.embedded,
    )


def _vector(index: ImageIndex, path: Path) -> np.ndarray:
    (record,) = index.get([file_id(str(path))], include_embeddings=True)
    assert record.embedding is not None
    return record.embedding


def test_first_sync_indexes_every_matching_file(index: ImageIndex, folder: Path) -> None:
    report = index.index_folder(folder, progress=False)

    assert _counts(report) == (5, 0, 0, 0, 0, 5)
    uris = {r.uri for r in index.get([file_id(str(p)) for p in folder.rglob("*.*g")])}
    assert uris == {str(p) for p in folder.rglob("*") if p.suffix in (".png", ".jpg")}
    record = index.get([file_id(str(folder / "img-0.png"))])[0]
    assert record.metadata["folder"] == str(folder)


def test_an_unchanged_folder_is_skipped_without_reading_a_file(
    index: ImageIndex, folder: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    index.index_folder(folder, progress=False)

    def no_reading(*args: Any, **kwargs: Any) -> bytes:
        raise AssertionError("an unchanged file was read")

    monkeypatch.setattr("clip_multimodal.index._sources.images.read_bytes", no_reading)
    report = index.index_folder(folder, progress=False)

    assert _counts(report) == (0, 0, 5, 0, 0, 0)


def test_a_touched_file_keeps_its_vector_and_is_skipped_next_time(
    index: ImageIndex, folder: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    index.index_folder(folder, progress=False)
    target = folder / "img-1.png"
    later = target.stat().st_mtime + 100
    os.utime(target, (later, later))

    touched = index.index_folder(folder, progress=False)
    monkeypatch.setattr(
        "clip_multimodal.index._sources.images.read_bytes",
        lambda *a, **k: (_ for _ in ()).throw(AssertionError("read again")),
    )
    after = index.index_folder(folder, progress=False)

    assert _counts(touched) == (0, 0, 5, 0, 0, 0)  # read and hashed, not embedded
    assert index.get([file_id(str(target))])[0].metadata["mtime_ns"] == target.stat().st_mtime_ns
    assert _counts(after) == (0, 0, 5, 0, 0, 0)


def test_a_modified_file_is_re_embedded(index: ImageIndex, folder: Path) -> None:
    index.index_folder(folder, progress=False)
    target = folder / "img-2.png"
    before = _vector(index, target)
    _write_image(target, seed=99)

    report = index.index_folder(folder, progress=False)

    assert _counts(report) == (0, 1, 4, 0, 0, 1)
    after = _vector(index, target)
    assert not np.allclose(before, after)
    assert np.allclose(after, index.encoder.embed_images([target])[0], atol=1e-6)
    assert index.count() == 5


def test_a_deleted_file_is_removed(index: ImageIndex, folder: Path) -> None:
    index.index_folder(folder, progress=False)
    shutil.rmtree(folder / "sub")

    report = index.index_folder(folder, progress=False)

    assert _counts(report) == (0, 0, 4, 1, 0, 0)
    assert index.count() == 4
    assert index.get([file_id(str(folder / "sub" / "deep.jpg"))]) == []


def test_a_renamed_file_reuses_its_vector(index: ImageIndex, folder: Path) -> None:
    index.index_folder(folder, progress=False)
    old, new = folder / "img-3.png", folder / "moved" / "renamed.png"
    vector = _vector(index, old)
    new.parent.mkdir()
    old.rename(new)

    report = index.index_folder(folder, progress=False)

    assert _counts(report) == (1, 0, 4, 1, 0, 0)  # nothing embedded
    assert np.allclose(_vector(index, new), vector)
    assert index.get([file_id(str(old))]) == []
    assert index.count() == 5


def test_a_copied_file_is_a_second_record_with_the_same_vector(
    index: ImageIndex, folder: Path
) -> None:
    index.index_folder(folder, progress=False)
    shutil.copy(folder / "img-0.png", folder / "copy.png")

    report = index.index_folder(folder, progress=False)

    assert _counts(report) == (1, 0, 5, 0, 0, 0)
    assert np.allclose(_vector(index, folder / "copy.png"), _vector(index, folder / "img-0.png"))
    assert index.count() == 6


def test_broken_files_are_reported_and_the_rest_indexed(index: ImageIndex, folder: Path) -> None:
    (folder / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\x00" * 64)
    (folder / "empty.jpg").write_bytes(b"")

    report = index.index_folder(folder, progress=False)

    assert _counts(report)[:5] == (5, 0, 0, 0, 2)
    assert sorted(f.source for f in report.failed) == [
        str(folder / "broken.png"),
        str(folder / "empty.jpg"),
    ]
    assert all(f.reason for f in report.failed)
    assert index.count() == 5


def test_patterns_and_recursion(index: ImageIndex, folder: Path) -> None:
    flat = index.index_folder(folder, recursive=False, patterns=("*.PNG",), progress=False)
    assert _counts(flat) == (4, 0, 0, 0, 0, 4)  # case-insensitive, no subfolder

    everything = index.index_folder(folder, progress=False)
    assert _counts(everything) == (1, 0, 4, 0, 0, 1)

    # A narrower scan does not remove records of files that still exist.
    again = index.index_folder(folder, recursive=False, progress=False)
    assert again.removed == 0 and index.count() == 5


def test_syncing_a_parent_folder_adopts_a_subfolder_without_re_embedding(
    index: ImageIndex, folder: Path
) -> None:
    index.index_folder(folder / "sub", progress=False)

    report = index.index_folder(folder, progress=False)

    assert _counts(report) == (4, 0, 1, 0, 0, 4)
    record = index.get([file_id(str(folder / "sub" / "deep.jpg"))])[0]
    assert record.metadata["folder"] == str(folder)
    assert index.count() == 5


def test_progress_callback_and_bar(
    index: ImageIndex, folder: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    seen: list[tuple[int, int]] = []
    index.index_folder(folder, callback=lambda done, total: seen.append((done, total)))
    index.index_folder(folder, progress=True)

    assert seen[-1] == (5, 5)
    assert [d for d, _ in seen] == sorted(d for d, _ in seen)
    assert "5/5" in capsys.readouterr().err


def test_a_missing_folder_is_refused(index: ImageIndex, tmp_path: Path) -> None:
    with pytest.raises(NotADirectoryError, match="not a folder"):
        index.index_folder(tmp_path / "nope")


@pytest.mark.slow
def test_re_indexing_2000_unchanged_files_takes_under_two_seconds(
    index: ImageIndex, tmp_path: Path
) -> None:
    root = tmp_path / "many"
    root.mkdir()
    seed_image = _write_image(root / "0000.png", seed=0).read_bytes()
    for i in range(1, 2000):  # one content, 2,000 files: the first sync embeds once
        (root / f"{i:04d}.png").write_bytes(seed_image)
    first = index.index_folder(root, progress=False)
    assert first.added == 2000 and first.embedded == 1

    start = time.perf_counter()
    report = index.index_folder(root, progress=False)
    elapsed = time.perf_counter() - start

    assert report.unchanged == 2000 and report.embedded == 0
    assert elapsed < 2.0, f"re-index took {elapsed:.2f}s"


def test_the_plan_pages_through_the_stored_records(
    index: ImageIndex, folder: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from clip_multimodal.index import _chroma

    first = index.index_folder(folder, progress=False)
    monkeypatch.setattr(_chroma, "PAGE", 2)  # several pages, the last one short or empty
    again = index.index_folder(folder, progress=False)
    assert (again.unchanged, again.added, again.embedded) == (first.added, 0, 0)
    (folder / "img-0.png").unlink()
    assert index.index_folder(folder, progress=False).removed == 1
