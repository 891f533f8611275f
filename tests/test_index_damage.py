"""A damaged embedded store is detected, explained (path and repair) and rebuilt.

Each case damages a real embedded Chroma store whose HNSW index has been saved to disk (a
collection made with a small `sync_threshold`, so a few hundred records are enough), then
opens it as a fresh process would (Chroma's per-path cache is dropped first).
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from clip_multimodal.errors import IndexDamagedError
from clip_multimodal.index import ImageIndex, check_collection, describe_collection
from clip_multimodal.index._health import SQLITE_NAME, forget_client, segment_folders
from clip_multimodal.index._store import make_client
from clip_multimodal.testing import FakeEncoder

N = 400
NAME = "photos"


def _new_store(path: Path) -> None:
    """N records in a collection whose HNSW index is saved every 100 records."""
    make_client(path, None, None).create_collection(
        NAME,
        embedding_function=None,
        configuration={"hnsw": {"space": "cosine", "sync_threshold": 100, "batch_size": 100}},
    )
    index = ImageIndex(FakeEncoder(), NAME, path)
    vectors = np.random.default_rng(0).normal(size=(N, index.encoder.dim))
    index.add_embeddings(vectors, [f"r{i}" for i in range(N)])
    forget_client(path)  # as a new process: nothing of the store cached in memory
    assert len(segment_folders(path)) == 1


def _truncate(path: Path, fraction: float) -> None:
    os.truncate(path, int(path.stat().st_size * fraction))


def _garble(path: Path) -> None:
    with open(path, "r+b") as f:
        f.seek(4096 * 3)
        f.write(np.random.default_rng(1).bytes(4096 * 20))


def _hnsw(path: Path) -> Path:
    (segment,) = segment_folders(path)
    return segment


DATABASE_DAMAGE: dict[str, Callable[[Path], None]] = {
    "deleted": lambda p: (p / SQLITE_NAME).unlink(),
    "emptied": lambda p: _truncate(p / SQLITE_NAME, 0),
    "truncated": lambda p: _truncate(p / SQLITE_NAME, 0.5),
    "garbled": lambda p: _garble(p / SQLITE_NAME),
}


@pytest.fixture
def store(tmp_path: Path) -> Path:
    path = tmp_path / "chroma"
    _new_store(path)
    return path


@pytest.mark.parametrize("damage", sorted(DATABASE_DAMAGE))
def test_a_damaged_database_is_an_error_naming_the_path_and_the_repair(
    store: Path, damage: str
) -> None:
    DATABASE_DAMAGE[damage](store)

    with pytest.raises(IndexDamagedError) as opened:
        ImageIndex(FakeEncoder(), NAME, store)
    with pytest.raises(IndexDamagedError):
        describe_collection(NAME, store)  # `info` no longer says "not created yet"
    health = check_collection(NAME, store)

    assert str(store) in str(opened.value) and "--rebuild" in str(opened.value)
    assert not health.ok and str(store) in health.problems[0]
    if damage in ("deleted", "emptied"):  # Chroma would have replaced it with an empty one
        assert not (store / SQLITE_NAME).exists() or (store / SQLITE_NAME).stat().st_size == 0


def test_a_deleted_hnsw_folder_is_caught_by_search_and_check(store: Path) -> None:
    shutil.rmtree(_hnsw(store))
    index = ImageIndex(FakeEncoder(), NAME, store)
    assert index.count() == N  # the records are still listed

    with pytest.raises(IndexDamagedError) as searched:
        index.search_by_vector(np.ones(index.encoder.dim), k=N)
    health = check_collection(NAME, store)

    assert str(store) in str(searched.value)
    assert (health.count, health.ok) == (N, False)
    assert health.reachable is None or health.reachable < N  # short, or the query fails


@pytest.mark.parametrize("how", ["truncated", "emptied"])
def test_damaged_hnsw_files_give_a_clear_error(store: Path, how: str) -> None:
    for file in _hnsw(store).iterdir():
        _truncate(file, 0.5 if how == "truncated" else 0)

    health = check_collection(NAME, store)
    with pytest.raises(IndexDamagedError, match="--rebuild") as searched:
        ImageIndex(FakeEncoder(), NAME, store).search_by_vector(np.ones(32), k=N)

    assert str(store) in str(searched.value)
    assert not health.ok


def test_a_healthy_store_passes_the_check(store: Path) -> None:
    health = check_collection(NAME, store)

    assert (health.ok, health.count, health.reachable, health.problems) == (True, N, N, [])
    assert check_collection("never-made", store).ok


def _images(folder: Path, n: int) -> Path:
    folder.mkdir()
    rng = np.random.default_rng(2)
    for i in range(n):
        pixels = rng.integers(0, 256, (12, 12, 3), dtype=np.uint8)
        Image.fromarray(pixels).save(folder / f"{i:03d}.png")
    return folder


@pytest.mark.parametrize("damage", ["deleted", "garbled", "hnsw"])
def test_rebuild_restores_the_collection_from_its_folder(tmp_path: Path, damage: str) -> None:
    path, folder = tmp_path / "chroma", _images(tmp_path / "imgs", 30)
    ImageIndex(FakeEncoder(), NAME, path).index_folder(folder, progress=False)
    forget_client(path)
    if damage == "hnsw":
        for file in _hnsw(path).iterdir():
            _truncate(file, 0.5)
    else:
        DATABASE_DAMAGE[damage](path)

    index = ImageIndex.rebuild(FakeEncoder(), NAME, path)
    report = index.index_folder(folder, progress=False)

    assert (report.added, report.failed) == (30, [])
    assert check_collection(NAME, path).ok
    assert len(index.search_by_vector(np.ones(32), k=30)) == 30
    moved = [p for p in tmp_path.iterdir() if p.name.startswith("chroma.damaged-")]
    assert len(moved) == (0 if damage == "hnsw" else 1)  # a store-wide loss is kept aside
