"""index_folder when files change under it: deleted mid-run, replaced by a folder or a
non-image, or rewritten with the same size and mtime (`verify=True`)."""

from __future__ import annotations

import os
import random
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from clip_multimodal.index import ImageIndex, IndexReport, _sync
from clip_multimodal.index._sync import FileStat, file_id
from clip_multimodal.testing import FakeEncoder


def _write_image(path: Path, seed: int) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    pixels = np.random.default_rng(seed).integers(0, 256, (16, 16, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(path)
    return path


def _folder(root: Path, n: int) -> Path:
    for i in range(n):
        _write_image(root / f"img-{i:03d}.png", seed=i)
    return root


def _embedded(tmp_path: Path, chunk_size: int | None = None) -> ImageIndex:
    name = f"v-{uuid.uuid4().hex[:12]}"
    return ImageIndex(FakeEncoder(), name, tmp_path / "db", chunk_size=chunk_size)


def _stored_uris(index: ImageIndex) -> set[str]:
    return {m["uri"] for m in index.collection.get(include=["metadatas"])["metadatas"]}


def _counts(report: IndexReport) -> tuple[int, int, int, int, int]:
    return report.added, report.updated, report.unchanged, report.removed, len(report.failed)


def test_a_file_deleted_between_listing_and_stat_is_left_out(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = _folder(tmp_path / "photos", 4)
    victim = root / "img-001.png"
    walk = _sync._walk

    def deleting_walk(top: str, recursive: bool) -> Iterator[os.DirEntry[str]]:
        for entry in walk(top, recursive):
            if entry.path == str(victim):
                victim.unlink()  # listed by scandir, gone before its stat
            yield entry

    monkeypatch.setattr(_sync, "_walk", deleting_walk)
    index = _embedded(tmp_path)

    report = index.index_folder(root, progress=False)

    assert _counts(report) == (3, 0, 0, 0, 0)
    assert _stored_uris(index) == {str(p) for p in root.iterdir()}


def test_files_listed_by_the_scan_but_gone_before_the_read_are_gone_not_failed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = _folder(tmp_path / "photos", 4)
    index = _embedded(tmp_path)
    index.index_folder(root, progress=False)
    stale_stat = {str(p): FileStat(str(p), 1, 1) for p in root.iterdir()}  # forces a re-read
    never_indexed = str(root / "new.png")
    stale_stat[never_indexed] = FileStat(never_indexed, 1, 1)
    (root / "img-002.png").unlink()
    monkeypatch.setattr(
        "clip_multimodal.index._sync.scan_folder",
        lambda *args: sorted(stale_stat.values(), key=lambda f: f.uri),
    )

    report = index.index_folder(root, progress=False)

    # img-002 was indexed: its record is removed; new.png never was: it is skipped.
    assert (report.removed, report.failed, report.added) == (1, [], 0)
    assert _stored_uris(index) == {str(p) for p in root.iterdir()}


def test_files_deleted_from_the_progress_callback_mid_run(tmp_path: Path) -> None:
    root = _folder(tmp_path / "photos", 12)
    index = _embedded(tmp_path, chunk_size=2)
    index.index_folder(root, progress=False)  # all 12 stored
    for i in range(12, 20):
        _write_image(root / f"img-{i:03d}.png", seed=i)
    for path in root.iterdir():  # every file is read again
        os.utime(path, (1, 1))
    deleted: list[Path] = []

    def delete_ahead(done: int, total: int) -> None:
        if not deleted and done >= 4:
            deleted.extend(sorted(root.iterdir())[done::3])  # indexed and new, not yet read
            for path in deleted:
                path.unlink()

    report = index.index_folder(root, progress=False, callback=delete_ahead)

    assert report.failed == []
    assert _stored_uris(index) == {str(p) for p in root.iterdir()}
    assert report.removed == sum(1 for p in deleted if int(p.stem[-3:]) < 12)


def test_a_concurrent_deleter_never_aborts_the_run(tmp_path: Path) -> None:
    root = _folder(tmp_path / "photos", 150)
    index = _embedded(tmp_path, chunk_size=8)
    files = sorted(root.iterdir())
    originals = {str(p) for p in files}
    stop = threading.Event()

    def deleter() -> None:
        rng = random.Random(0)
        while not stop.is_set() and files:
            files.pop(rng.randrange(len(files))).unlink()
            stop.wait(0.002)

    thread = threading.Thread(target=deleter)
    thread.start()
    try:
        report = index.index_folder(root, progress=False)
    finally:
        stop.set()
        thread.join()

    assert report.failed == []
    assert _stored_uris(index) <= originals
    again = index.index_folder(root, progress=False)
    assert again.failed == []
    assert _stored_uris(index) == {str(p) for p in root.iterdir()}


def test_a_file_overwritten_with_a_non_image_loses_its_record(
    chroma_client: Any, tmp_path: Path
) -> None:
    root = _folder(tmp_path / "photos", 3)
    index = ImageIndex(FakeEncoder(), f"v-{uuid.uuid4().hex[:12]}", client=chroma_client)
    index.index_folder(root, progress=False)
    target = root / "img-001.png"
    target.write_text("not an image any more")

    report = index.index_folder(root, progress=False)

    assert _counts(report) == (0, 0, 2, 1, 1)
    assert report.failed[0].source == str(target)
    assert index.get([file_id(str(target))]) == []
    assert all(hit.uri != str(target) for hit in index.search("x", k=10, query_type="text"))


def test_a_file_replaced_by_a_folder_is_removed_and_counted(
    chroma_client: Any, tmp_path: Path
) -> None:
    root = _folder(tmp_path / "photos", 3)
    index = ImageIndex(FakeEncoder(), f"v-{uuid.uuid4().hex[:12]}", client=chroma_client)
    index.index_folder(root, progress=False)
    target = root / "img-001.png"
    target.unlink()
    target.mkdir()

    report = index.index_folder(root, progress=False)

    assert _counts(report) == (0, 0, 2, 1, 0)
    assert index.get([file_id(str(target))]) == []
    assert index.count() == 2


def test_verify_catches_a_rewrite_with_the_same_size_and_mtime(tmp_path: Path) -> None:
    root = tmp_path / "photos"
    target = _write_image(root / "a.png", seed=1)
    _write_image(root / "b.png", seed=2)
    index = _embedded(tmp_path)
    index.index_folder(root, progress=False)
    stat = target.stat()
    other = _write_image(tmp_path / "other.png", seed=3).read_bytes()
    assert len(other) == stat.st_size  # same geometry and random pixels: same PNG size
    target.write_bytes(other)
    os.utime(target, ns=(stat.st_atime_ns, stat.st_mtime_ns))

    quick = index.index_folder(root, progress=False)
    verified = index.index_folder(root, progress=False, verify=True)

    assert _counts(quick) == (0, 0, 2, 0, 0)  # the documented blind spot
    assert _counts(verified) == (0, 1, 1, 0, 0) and verified.embedded == 1
    (record,) = index.get([file_id(str(target))], include_embeddings=True)
    assert np.allclose(record.embedding, FakeEncoder().embed_images([target])[0], atol=1e-6)
