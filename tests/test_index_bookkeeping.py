"""index_folder's bookkeeping at scale and when shared: reads that page under Chroma's limits,
and writes read back (to count records another writer stored first) unless none can exist."""

from __future__ import annotations

import os
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import chromadb
import numpy as np
from PIL import Image

from clip_multimodal.images import SourceKind
from clip_multimodal.index import ImageIndex
from clip_multimodal.index._ingest import MAX_CHUNK, Job, WritePolicy, chunks
from clip_multimodal.index._lock import sole_writer, write_lock
from clip_multimodal.testing import FakeEncoder

# Chroma refuses a get of this many ids, or of a where matching this many records, at once
# ("too many SQL variables"); a deleted folder this large must still sync.
MANY = 40_000


def _images(folder: Path, n: int) -> Path:
    folder.mkdir()
    rng = np.random.default_rng(0)
    for i in range(n):
        pixels = rng.integers(0, 256, (12, 12, 3), dtype=np.uint8)
        Image.fromarray(pixels).save(folder / f"{i:03d}.png")
    return folder


def test_sole_writer_holds_only_while_one_call_of_one_process_writes(tmp_path: Path) -> None:
    assert not sole_writer(None)()  # a server or in-memory client: others may write
    assert not sole_writer(tmp_path)()  # the lock is not held at all
    with write_lock(tmp_path):
        alone = sole_writer(tmp_path)
        assert alone()
        with write_lock(tmp_path):  # a second call of this process (another index, thread)
            assert not alone() and not sole_writer(tmp_path)()
        assert not alone()  # that call may have written meanwhile
        assert sole_writer(tmp_path)()  # a check made from now on starts afresh
    assert not alone()


class _MeetingEncoder(FakeEncoder):
    """Each of two indexes waits for the other before its first embedding: both have looked
    their records up (none stored) before either writes."""

    def __init__(self, barrier: threading.Barrier) -> None:
        super().__init__()
        self._barrier = barrier

    def try_embed_images(self, images: Sequence[Any]) -> Any:
        if not self.calls:
            self._barrier.wait(timeout=60)
        return super().try_embed_images(images)


def test_two_indexes_of_one_process_racing_on_one_folder_count_each_record_once(
    tmp_path: Path,
) -> None:
    folder, store, n = _images(tmp_path / "imgs", 20), tmp_path / "db", 20
    barrier = threading.Barrier(2)
    indexes = [ImageIndex(_MeetingEncoder(barrier), "race", store, chunk_size=n) for _ in range(2)]
    reports: list[Any] = [None, None]

    def sync(i: int) -> None:
        reports[i] = indexes[i].index_folder(folder, progress=False)

    threads = [threading.Thread(target=sync, args=(i,)) for i in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    # Each record was written by one of them; the other counts it unchanged, not added.
    assert sum(r.added for r in reports) == n
    assert [r.added + r.unchanged for r in reports] == [n, n]
    assert indexes[0].count() == n


def test_a_deleted_folder_of_40000_records_syncs_through_pages(tmp_path: Path) -> None:
    folder, store = _images(tmp_path / "imgs", 2), tmp_path / "db"
    index = ImageIndex(FakeEncoder(), "big", store)
    assert index.index_folder(folder, progress=False).added == 2
    # Another client of the same store adds the records of a folder's files since deleted.
    theirs = chromadb.PersistentClient(str(store))  # as a user opens it: Chroma's defaults
    collection = theirs.get_collection("big")
    vectors = np.random.default_rng(1).standard_normal((MANY, index.encoder.dim))
    ids = [f"file:{i:064x}" for i in range(MANY)]
    for s in range(0, MANY, 5000):
        collection.add(
            ids=ids[s : s + 5000],
            embeddings=vectors[s : s + 5000].astype(np.float32),
            uris=[str(folder / f"gone-{i}.png") for i in range(s, s + 5000)],
            metadatas=[{"folder": str(folder), "mtime_ns": 1, "size": 1}] * 5000,
        )
    assert len(index.get(ids)) == MANY  # asked a page of ids at a time
    report = index.index_folder(folder, progress=False)
    assert (report.removed, report.unchanged, report.added) == (MANY, 2, 0)
    assert index.count() == 2


def _jobs(sizes: Sequence[int | None]) -> list[Job]:
    def kind(size: int | None) -> SourceKind | None:
        if size is None:
            return None  # a URL or bytes: its size is not known before it is read
        return SourceKind("path", "f", os.stat_result((0o100644, 0, 0, 1, 0, 0, size, 0, 0, 0)))

    return [Job(i, f"/f/{i}", kind=kind(size)) for i, size in enumerate(sizes)]


def _lengths(sizes: Sequence[int | None], grow: int | None, chunk: int = 64) -> list[int]:
    policy = WritePolicy(lambda batch: None, chunk, 1024, 1.0, grow_bytes=grow)
    return [len(c) for c in chunks(_jobs(sizes), policy)]


def test_chunks_of_small_files_grow_and_of_photos_or_unknown_sizes_do_not() -> None:
    mib = 2**20
    assert _lengths([3000] * 1000, 32 * mib) == [MAX_CHUNK, 1000 - MAX_CHUNK]
    assert _lengths([3 * mib] * 130, 32 * mib) == [64, 64, 2]  # 64 photos hold 192 MiB
    assert _lengths([None] * 130, 32 * mib) == [64, 64, 2]
    assert _lengths([mib] * 100, 32 * mib) == [64, 36]  # grows only past 64 and under 32 MiB
    assert _lengths([mib // 4] * 150, 32 * mib) == [128, 22]  # until it holds 32 MiB
    assert _lengths([3000] * 1000, None) == [64] * 15 + [40]  # a chunk size the caller chose
    assert _lengths([3000] * 10, 32 * mib) == [10]


def test_index_folder_embeds_small_files_in_grown_chunks_unless_a_chunk_size_is_given(
    tmp_path: Path,
) -> None:
    folder = _images(tmp_path / "imgs", 600)
    default = FakeEncoder()
    ImageIndex(default, "grown", tmp_path / "db").index_folder(folder, progress=False)
    assert [n for _, n in default.calls] == [MAX_CHUNK, 600 - MAX_CHUNK]
    chosen = FakeEncoder()
    ImageIndex(chosen, "chosen", tmp_path / "db", chunk_size=100).index_folder(
        folder, progress=False
    )
    assert [n for _, n in chosen.calls] == [100] * 6


def test_the_folder_matcher_agrees_with_fnmatch_case_insensitively() -> None:
    import fnmatch

    from clip_multimodal.index._sync import _matcher

    patterns = ["*.PNG", "img-??.jp*g", "[ab]*.webp", "*.tar.gz"]
    names = ["a.png", "x.PNG", "img-01.jpeg", "img-1.jpg", "b1.webp", "c1.webp", "f.tar.gz",
             "png", ".png", "a.png.txt", "IMG-22.JPG", "a\nb.png"]  # fmt: skip
    matches = _matcher(patterns)
    for name in names:
        expected = any(fnmatch.fnmatchcase(name.lower(), p.lower()) for p in patterns)
        assert bool(matches(name.lower())) == expected, name
    assert not _matcher([])("a.png")
