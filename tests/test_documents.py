"""Documents as image sources: extraction, provenance, the document image URI, bad documents."""

from __future__ import annotations

import io
import tracemalloc
from pathlib import Path

import pytest
from PIL import Image

from clip_multimodal.documents import (
    DocumentImage,
    DocumentOptions,
    ExtractFailure,
    Provenance,
    document_fragment,
    extract_images,
    read_document_image,
)
from clip_multimodal.errors import DocumentLoadError, ImageLoadError
from clip_multimodal.images import AccessDeniedError, AccessPolicy, classify, load_image
from tests.document_helpers import break_image_streams, make_pdf, make_pptx, noise


@pytest.fixture
def report_pdf(tmp_path: Path) -> Path:
    logo = noise(1)
    return make_pdf(
        tmp_path / "report.pdf",
        [
            ("Intro", [(logo, (10, 10, 100, 80)), (noise(2, 8), (200, 10, 8, 8))]),
            ("Figures", [(logo, (10, 10, 100, 80)), (noise(3), (150, 200, 64, 64))]),
            ("Only text here", []),
        ],
        title="Annual report",
    )


def _images(path: Path, **options: object) -> list[DocumentImage]:
    found = list(extract_images(path, DocumentOptions(**options)))  # type: ignore[arg-type]
    assert all(isinstance(i, DocumentImage) for i in found), found
    return found  # type: ignore[return-value]


def test_embedded_images_carry_provenance_skip_tiny_and_dedupe_logos(report_pdf: Path) -> None:
    found = _images(report_pdf)
    assert [(i.provenance.page, i.provenance.index) for i in found] == [(1, 0), (2, 1)]
    first = found[0].provenance
    assert first == Provenance(
        str(report_pdf), 1, "embedded", 0, 64, 64, (10.0, 10.0, 110.0, 90.0), "Annual report"
    )
    assert found[1].provenance.bbox == (150.0, 200.0, 214.0, 264.0)
    assert Image.open(io.BytesIO(found[1].data)).size == (64, 64)


def test_min_size_and_dedupe_are_configurable(report_pdf: Path) -> None:
    found = _images(report_pdf, min_size=0, dedupe=False)
    assert [(i.provenance.page, i.provenance.index) for i in found] == [
        (1, 0),
        (1, 1),
        (2, 0),
        (2, 1),
    ]


def test_pages_mode_renders_every_page_and_both_gives_both(report_pdf: Path) -> None:
    pages = _images(report_pdf, mode="pages", page_size=256)
    assert [(p.provenance.page, p.provenance.kind) for p in pages] == [
        (1, "page"),
        (2, "page"),
        (3, "page"),
    ]
    assert Image.open(io.BytesIO(pages[2].data)).size == (256, 256)
    both = _images(report_pdf, mode="both", page_size=64)
    assert [p.provenance.kind for p in both] == ["embedded", "page", "embedded", "page", "page"]


def test_the_uri_reads_the_same_image_back_through_load_image(report_pdf: Path) -> None:
    image = _images(report_pdf)[1]
    uri = image.provenance.uri
    assert uri == f"{report_pdf}#page=2&image=1"
    assert document_fragment(uri) == (str(report_pdf), 2, 1, None)
    assert read_document_image(uri) == image.data
    assert classify(uri).kind == "document"
    assert load_image(uri).size == (64, 64)
    assert load_image(f"{report_pdf}#page=3").size == (1024, 1024)  # the rendered page
    page = _images(report_pdf, mode="pages", page_size=200)[0]
    assert page.provenance.uri == f"{report_pdf}#page=1&px=200"
    assert read_document_image(page.provenance.uri) == page.data


def test_a_document_image_uri_obeys_the_access_policy(report_pdf: Path, tmp_path: Path) -> None:
    uri = f"{report_pdf}#page=1&image=0"
    AccessPolicy(roots=[tmp_path]).check(uri)
    with pytest.raises(AccessDeniedError):
        AccessPolicy(roots=[tmp_path / "elsewhere"]).check(uri)


def test_a_uri_naming_a_missing_page_or_image_is_a_typed_error(report_pdf: Path) -> None:
    with pytest.raises(DocumentLoadError, match=r"report\.pdf.*it has 3 pages"):
        read_document_image(f"{report_pdf}#page=9&image=0")
    with pytest.raises(ImageLoadError, match=r"page 3 image 0.*has 0 images"):
        load_image(f"{report_pdf}#page=3&image=0")


def test_encrypted_pdf_is_a_typed_error_naming_the_file(tmp_path: Path) -> None:
    path = make_pdf(
        tmp_path / "secret.pdf", [("x", [(noise(1), (0, 0, 50, 50))])], user_password="pw"
    )
    with pytest.raises(DocumentLoadError, match=r"secret\.pdf: encrypted with a password"):
        list(extract_images(path))


def test_restrictions_only_encryption_opens(tmp_path: Path) -> None:
    path = make_pdf(
        tmp_path / "locked.pdf", [("x", [(noise(1), (0, 0, 50, 50))])], user_password=""
    )
    assert len(_images(path)) == 1


def test_truncated_pdf_is_a_typed_error(report_pdf: Path, tmp_path: Path) -> None:
    data = report_pdf.read_bytes()
    cut = tmp_path / "cut.pdf"
    cut.write_bytes(data[: len(data) // 2])
    with pytest.raises(DocumentLoadError, match=r"cut\.pdf: not a readable PDF"):
        list(extract_images(cut))


def test_not_a_pdf_at_all(tmp_path: Path) -> None:
    fake = tmp_path / "fake.pdf"
    fake.write_text("hello")
    with pytest.raises(DocumentLoadError, match=r"fake\.pdf"):
        list(extract_images(fake))


def test_broken_image_stream_is_one_failure_and_the_rest_still_comes(tmp_path: Path) -> None:
    path = make_pdf(tmp_path / "b.pdf", [("x", [(noise(1), (0, 0, 50, 50))])])
    break_image_streams(path)
    found = list(extract_images(path, DocumentOptions(mode="both", page_size=64)))
    failure, page = found
    assert isinstance(failure, ExtractFailure)
    assert failure.source == f"{path} page 1 image 0"
    assert "broken image stream" in failure.reason
    assert isinstance(page, DocumentImage) and page.provenance.kind == "page"


def test_pptx_pictures_with_provenance(tmp_path: Path) -> None:
    deck = make_pptx(
        tmp_path / "deck.pptx", [[noise(5), noise(6)], [noise(5), noise(7, 8)]], "Deck"
    )
    found = _images(deck)
    assert [(i.provenance.page, i.provenance.index) for i in found] == [(1, 0), (1, 1)]
    assert found[0].provenance.title == "Deck"
    assert found[0].provenance.bbox == (72.0, 324.0, 216.0, 468.0)
    assert read_document_image(found[1].provenance.uri) == found[1].data
    failure = list(extract_images(deck, DocumentOptions(mode="pages")))
    assert isinstance(failure[0], ExtractFailure) and "cannot be rendered" in failure[0].reason


def test_options_are_checked() -> None:
    with pytest.raises(ValueError, match="mode"):
        DocumentOptions(mode="all")  # type: ignore[arg-type]


@pytest.mark.slow
def test_a_2000_page_document_streams_in_bounded_memory(tmp_path: Path) -> None:
    figure = noise(9)
    pages = [
        (f"page {n}", [(noise(n, 40), (10, 10, 40, 40))] if n % 100 == 0 else [])
        for n in range(2000)
    ]
    pages[7] = ("figure", [(figure, (10, 10, 60, 60))])
    path = make_pdf(tmp_path / "long.pdf", pages)
    tracemalloc.start()
    try:
        count = 0
        for item in extract_images(path):
            assert isinstance(item, DocumentImage)
            count += 1
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert count == 21
    assert peak < 200 * 2**20, f"peak {peak / 2**20:.0f} MiB"


def test_the_document_benchmark_runs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from benchmarks import document_bench

    monkeypatch.setenv("CLIP_MM_BENCH_DIR", str(tmp_path))
    result = document_bench.run(pages=4, render_pages=2, page_size=64)
    extraction, rendering = (timed for timed, _ in result["rows"].values())
    assert (extraction["pages"], extraction["images"]) == (4, 4)
    assert (rendering["pages"], rendering["images"]) == (2, 2)
    assert extraction["peak_rss_mib"] >= extraction["rss_before_mib"] > 0


def test_an_image_declaring_too_many_pixels_is_refused_before_decoding(tmp_path: Path) -> None:
    path = make_pdf(tmp_path / "bomb.pdf", [("x", [(noise(1), (0, 0, 50, 50))])])
    data = path.read_bytes()
    assert data.count(b"/Width 64") == 1
    path.write_bytes(data.replace(b"/Width 64", b"/Width 99999999", 1))  # stream left as is
    (failure,) = list(extract_images(path))
    assert isinstance(failure, ExtractFailure)
    assert failure.source == f"{path} page 1 image 0" and "pixels, over the" in failure.reason


@pytest.mark.slow
def test_images_already_handed_on_are_not_kept(tmp_path: Path) -> None:
    """pypdf caches every object it resolves; extraction drops each page's images after it."""
    pages = [(f"p{n}", [(noise(n, 96), (10, 10, 96, 96))]) for n in range(100)]
    path = make_pdf(tmp_path / "images.pdf", pages)
    tracemalloc.start()
    try:
        heap = {}
        for i, _ in enumerate(extract_images(path), 1):
            if i in (20, 100):
                heap[i] = tracemalloc.get_traced_memory()[0]
    finally:
        tracemalloc.stop()
    # 80 more pages of ~27 KiB images each: over 4 MiB if they were kept, decoded and not
    assert heap[100] - heap[20] < 1.5 * 2**20, heap
