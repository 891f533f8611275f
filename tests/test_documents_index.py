"""Documents in the index: incremental sync per document, provenance on hits, bad documents."""

from __future__ import annotations

import os
import uuid
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from clip_multimodal.datasets import shapes
from clip_multimodal.documents import DocumentOptions
from clip_multimodal.index import ImageIndex, IndexReport
from clip_multimodal.testing import FakeEncoder
from tests.document_helpers import break_image_streams, make_pdf, make_pptx, noise


def _shape(colour: str, shape: str) -> Image.Image:
    combo = shapes.Combo(colour, shape, "large")
    return shapes.draw_shape(combo, "dark", np.random.default_rng(0))


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    root = tmp_path / "docs"
    make_pdf(
        root / "a.pdf",
        [("one", [(noise(1), (10, 10, 80, 80))]), ("two", [(noise(2), (10, 10, 80, 80))])],
        title="A",
    )
    make_pdf(root / "b.pdf", [("text only", [])])
    noise(3).save(root / "photo.png")
    return root


@pytest.fixture
def index(chroma_client: Any) -> ImageIndex:
    return ImageIndex(FakeEncoder(), f"d-{uuid.uuid4().hex[:12]}", client=chroma_client)


def _records(index: ImageIndex, source: Path) -> list[Any]:
    return index._store.records(where={"source": str(source)}, texts=False)


def _by_page(index: ImageIndex, source: Path) -> dict[tuple[int, int], str]:
    found = _records(index, source)
    return {(r.metadata["page"], r.metadata["image_index"]): r.id for r in found}


def test_folder_sync_indexes_documents_and_images(index: ImageIndex, folder: Path) -> None:
    report = index.index_folder(folder, progress=False)
    assert (report.added, report.documents, report.document_images) == (3, 2, 2)
    assert report.failed == []
    assert "2 documents holding 2 images" in str(report)
    records = {r.uri: r for r in _records(index, folder / "a.pdf")}
    uri = f"{folder / 'a.pdf'}#page=2&image=0"
    meta = records[uri].metadata
    assert (meta["page"], meta["source_kind"], meta["title"], meta["folder"]) == (
        2,
        "embedded",
        "A",
        str(folder),
    )
    assert (meta["width"], meta["height"], meta["bbox_x1"]) == (64, 64, 90.0)


def test_unchanged_touched_changed_and_deleted_documents(index: ImageIndex, folder: Path) -> None:
    index.index_folder(folder, progress=False)
    before = _by_page(index, folder / "a.pdf")
    again = index.index_folder(folder, progress=False)
    assert (again.added, again.unchanged, again.embedded, again.document_images) == (0, 3, 0, 2)

    stat = (folder / "a.pdf").stat()
    os.utime(folder / "a.pdf", ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))  # touched
    touched = index.index_folder(folder, progress=False)
    assert (touched.added, touched.updated, touched.embedded) == (0, 0, 0)
    assert index.get(ids=[before[(1, 0)]])[0].metadata["doc_mtime_ns"] == stat.st_mtime_ns + 10**9

    # page 2's figure replaced, a third page added: exactly those records change
    make_pdf(
        folder / "a.pdf",
        [
            ("one", [(noise(1), (10, 10, 80, 80))]),
            ("two", [(noise(4), (10, 10, 80, 80))]),
            ("three", [(noise(5), (10, 10, 80, 80))]),
        ],
        title="A",
    )
    changed = index.index_folder(folder, progress=False)
    assert (changed.added, changed.unchanged, changed.removed, changed.embedded) == (2, 2, 1, 2)
    after = _by_page(index, folder / "a.pdf")
    assert after[(1, 0)] == before[(1, 0)]
    assert after[(2, 0)] != before[(2, 0)] and set(after) == {(1, 0), (2, 0), (3, 0)}

    (folder / "a.pdf").unlink()
    gone = index.index_folder(folder, progress=False)
    assert gone.removed == 3
    assert _by_page(index, folder / "a.pdf") == {}
    assert index.count() == 1  # the photo


def test_bad_documents_fail_alone_naming_file_and_reason(index: ImageIndex, folder: Path) -> None:
    make_pdf(folder / "secret.pdf", [("x", [(noise(6), (0, 0, 50, 50))])], user_password="pw")
    data = (folder / "a.pdf").read_bytes()
    (folder / "cut.pdf").write_bytes(data[: len(data) // 2])
    break_image_streams(make_pdf(folder / "broken.pdf", [("x", [(noise(7), (0, 0, 50, 50))])]))
    report = index.index_folder(folder, progress=False)
    reasons = {Path(f.source.split(" page ")[0]).name: f.reason for f in report.failed}
    assert set(reasons) == {"secret.pdf", "cut.pdf", "broken.pdf"}
    assert "encrypted" in reasons["secret.pdf"]
    assert "not a readable PDF" in reasons["cut.pdf"]
    assert "broken image stream" in reasons["broken.pdf"]
    assert report.documents == 5 and report.added == 3  # a.pdf's two images and the photo


def test_a_document_that_turns_unreadable_loses_its_records(
    index: ImageIndex, folder: Path
) -> None:
    index.index_folder(folder, progress=False)
    (folder / "a.pdf").write_bytes(b"%PDF-1.4 garbage")
    report = index.index_folder(folder, progress=False)
    assert report.removed == 2 and len(report.failed) == 1
    assert _by_page(index, folder / "a.pdf") == {}


def test_add_takes_documents_and_images_together(index: ImageIndex, folder: Path) -> None:
    report = index.add(
        [str(folder / "a.pdf"), noise(8)],
        metadatas=[{"project": "x"}, None],
        document_options=DocumentOptions(mode="both", page_size=64),
    )
    assert report.ids[0] is None and report.ids[1] is not None
    assert (report.documents, report.document_images, report.added) == (1, 4, 5)
    kinds = sorted(
        (r.metadata["page"], r.metadata["source_kind"], r.metadata["project"])
        for r in _records(index, folder / "a.pdf")
    )
    assert kinds == [(1, "embedded", "x"), (1, "page", "x"), (2, "embedded", "x"), (2, "page", "x")]
    assert (
        index.add(
            [str(folder / "a.pdf")], document_options=DocumentOptions(mode="both", page_size=64)
        ).unchanged
        == 4
    )


def test_pptx_in_a_folder(index: ImageIndex, tmp_path: Path) -> None:
    make_pptx(tmp_path / "deck" / "talk.pptx", [[noise(1)], [noise(2), noise(3)]], title="Talk")
    report = index.index_folder(tmp_path / "deck", progress=False)
    assert (report.added, report.documents) == (3, 1)
    assert sorted(_by_page(index, tmp_path / "deck" / "talk.pptx")) == [(1, 0), (2, 0), (2, 1)]


def test_hits_expose_provenance_and_the_uri_loads(demo_encoder: Any, tmp_path: Path) -> None:
    circle, square = _shape("red", "circle"), _shape("blue", "square")
    make_pdf(
        tmp_path / "deck" / "shapes.pdf",
        [
            ("intro", []),
            ("a square", [(square, (50, 50, 200, 200))]),
            ("a circle", [(circle, (50, 50, 200, 200))]),
        ],
        title="Shapes",
    )
    index = ImageIndex(demo_encoder, f"d-{uuid.uuid4().hex[:12]}", path=tmp_path / "db")
    index.index_folder(tmp_path / "deck", progress=False)
    hit = index.search("a large red circle", k=1)[0]
    assert hit.provenance is not None
    assert (hit.provenance.page, hit.provenance.kind, hit.provenance.title) == (
        3,
        "embedded",
        "Shapes",
    )
    assert hit.provenance.label == "shapes.pdf, page 3"
    assert hit.uri == f"{tmp_path / 'deck' / 'shapes.pdf'}#page=3&image=0"


def test_report_str_unchanged_without_documents() -> None:
    assert "documents" not in str(IndexReport())


@pytest.mark.slow
def test_a_2000_page_document_is_indexed_in_one_run(tmp_path: Path) -> None:
    pages = [
        (f"page {n}", [(noise(n, 40), (10, 10, 40, 40))] if n % 100 == 0 else [])
        for n in range(2000)
    ]
    make_pdf(tmp_path / "docs" / "long.pdf", pages)
    noise(5).save(tmp_path / "docs" / "after.png")
    index = ImageIndex(FakeEncoder(), f"d-{uuid.uuid4().hex[:12]}", path=tmp_path / "db")
    report = index.index_folder(tmp_path / "docs", progress=False)
    assert (report.documents, report.document_images, report.added, report.failed) == (
        1,
        20,
        21,
        [],
    )
    pages_found = sorted(p for p, _ in _by_page(index, tmp_path / "docs" / "long.pdf"))
    assert pages_found == [n + 1 for n in range(0, 2000, 100)]


def test_a_deleted_document_loses_its_records_when_the_plan_reads_many_pages(
    index: ImageIndex, folder: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from clip_multimodal.index import _chroma

    index.index_folder(folder, progress=False)
    monkeypatch.setattr(_chroma, "PAGE", 1)  # a page per record: the plan must read them all
    (folder / "a.pdf").unlink()
    gone = index.index_folder(folder, progress=False)
    assert (gone.removed, gone.unchanged) == (2, 1)
    assert _by_page(index, folder / "a.pdf") == {} and index.count() == 1
