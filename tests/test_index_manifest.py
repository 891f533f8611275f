"""The sync manifest: a re-index reads no record's metadata, and the manifest never outranks
the store (deleted records, crashed or shared syncs, rebuilt collections, a broken file)."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import chromadb
import numpy as np
import pytest
from PIL import Image

from clip_multimodal.index import ImageIndex
from clip_multimodal.index._chroma import LockedCollection
from clip_multimodal.index._manifest import MANIFEST_NAME, Manifest
from clip_multimodal.index._sync import file_id
from clip_multimodal.testing import FakeEncoder

N = 12


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    root = tmp_path / "imgs"
    root.mkdir()
    rng = np.random.default_rng(0)
    for i in range(N):
        pixels = rng.integers(0, 256, (12, 12, 3), dtype=np.uint8)
        Image.fromarray(pixels).save(root / f"{i:02d}.png")
    return root


@pytest.fixture
def index(tmp_path: Path) -> ImageIndex:
    return ImageIndex(FakeEncoder(), "photos", tmp_path / "db")


@pytest.fixture
def metadata_reads(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """How many records each metadata read of the store returned."""
    reads: list[int] = []
    original = LockedCollection.records

    def counted(self: LockedCollection, *args: Any, **kwargs: Any) -> Any:
        found = original(self, *args, **kwargs)
        reads.append(len(found))
        return found

    monkeypatch.setattr(LockedCollection, "records", counted)
    return reads


def _rows(index: ImageIndex, folder: Path) -> dict[str, tuple[int, int]]:
    manifest = Manifest.of(index._store)
    assert manifest is not None
    rows = manifest.take(str(folder))
    manifest.save(str(folder), rows)  # put them back: take drops them
    return rows


def test_a_reindex_reads_no_record_metadata(
    index: ImageIndex, folder: Path, metadata_reads: list[int]
) -> None:
    index.index_folder(folder, progress=False)
    rows = _rows(index, folder)
    stat = (folder / "03.png").stat()
    assert rows[file_id(str(folder / "03.png"))] == (stat.st_mtime_ns, stat.st_size)
    metadata_reads.clear()
    again = index.index_folder(folder, progress=False)
    assert (again.unchanged, again.embedded) == (N, 0)
    assert sum(metadata_reads) == 0


def test_changes_after_a_manifest_sync_are_all_seen(index: ImageIndex, folder: Path) -> None:
    index.index_folder(folder, progress=False)
    stat = (folder / "00.png").stat()
    os.utime(folder / "00.png", ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))  # touched
    Image.new("RGB", (12, 12), "red").save(folder / "01.png")  # changed
    (folder / "02.png").unlink()  # gone
    (folder / "03.png").rename(folder / "moved.png")  # renamed
    report = index.index_folder(folder, progress=False)
    assert (report.added, report.updated, report.removed, report.embedded) == (1, 1, 2, 1)
    touched = index.get([file_id(str(folder / "00.png"))])[0]
    assert touched.metadata["mtime_ns"] == stat.st_mtime_ns + 10**9
    assert _rows(index, folder)[touched.id][0] == stat.st_mtime_ns + 10**9
    assert index.index_folder(folder, progress=False).unchanged == N - 1


def test_records_deleted_by_another_client_are_indexed_again(
    index: ImageIndex, folder: Path, tmp_path: Path
) -> None:
    index.index_folder(folder, progress=False)
    theirs = chromadb.PersistentClient(str(tmp_path / "db")).get_collection("photos")
    theirs.delete(ids=[file_id(str(folder / f"{i:02d}.png")) for i in range(3)])
    report = index.index_folder(folder, progress=False)
    assert (report.added, report.unchanged) == (3, N - 3)
    assert index.count() == N


def test_a_failed_sync_leaves_no_rows_to_trust(index: ImageIndex, folder: Path) -> None:
    index.index_folder(folder, progress=False)
    Image.new("RGB", (12, 12), "blue").save(folder / "05.png")

    class Broken(Exception):
        pass

    def fail(done: int, total: int) -> None:
        raise Broken

    with pytest.raises(Broken):
        index.index_folder(folder, progress=False, callback=fail)
    assert _rows(index, folder) == {}
    report = index.index_folder(folder, progress=False)  # from the store's own metadata
    assert (report.updated, report.unchanged) == (1, N - 1)
    assert len(_rows(index, folder)) == N


def test_a_sync_sharing_the_store_with_another_write_saves_no_rows(
    index: ImageIndex, folder: Path, tmp_path: Path
) -> None:
    other = ImageIndex(FakeEncoder(), "other", tmp_path / "db")
    extra = tmp_path / "extra.png"
    Image.new("RGB", (8, 8), "green").save(extra)

    def meanwhile(done: int, total: int) -> None:
        if other.count() == 0:
            other.add([extra])  # another write of this process, inside this sync

    assert index.index_folder(folder, progress=False, callback=meanwhile).added == N
    assert _rows(index, folder) == {}
    index.index_folder(folder, progress=False)  # alone: saves them
    assert len(_rows(index, folder)) == N


def test_a_recreated_collection_does_not_use_the_old_rows(
    index: ImageIndex, folder: Path, tmp_path: Path
) -> None:
    index.index_folder(folder, progress=False)
    client = chromadb.PersistentClient(str(tmp_path / "db"))
    client.delete_collection("photos")
    fresh = ImageIndex(FakeEncoder(), "photos", client=client)
    assert fresh.index_folder(folder, progress=False).added == N


def test_an_unusable_manifest_file_is_logged_and_the_sync_goes_on(
    index: ImageIndex, folder: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    (tmp_path / "db" / MANIFEST_NAME).mkdir()  # not a file SQLite can open
    assert index.index_folder(folder, progress=False).added == N
    assert index.index_folder(folder, progress=False).unchanged == N
    assert "sync manifest" in caplog.text


def test_a_server_store_has_no_manifest(chroma_client: Any, chroma_client_kind: str) -> None:
    index = ImageIndex(FakeEncoder(), "photos", client=chroma_client)
    expected: Sequence[bool] = [chroma_client_kind == "embedded"]
    assert [Manifest.of(index._store) is not None] == list(expected)
