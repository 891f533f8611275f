"""The HTTP service and documents: hits cite "document.pdf, page N" and the image route serves
the extracted image or the rendered page, only while the document is the one indexed."""

from __future__ import annotations

import hashlib
import io
import os
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import chromadb
import numpy as np
import pytest
from fastapi.testclient import TestClient
from PIL import Image

from clip_multimodal.datasets import Combo
from clip_multimodal.datasets.shapes import draw_shape
from clip_multimodal.documents import DocumentOptions
from clip_multimodal.index import ImageIndex
from clip_multimodal.server import ServerSettings, create_app
from tests.document_helpers import make_pdf


def _shape(colour: str, shape: str) -> Image.Image:
    return draw_shape(Combo(colour, shape, "large"), "dark", np.random.default_rng(0))


@pytest.fixture
def served(tmp_path: Path, demo_encoder: Any) -> Iterator[tuple[TestClient, Path]]:
    pdf = make_pdf(
        tmp_path / "docs" / "report.pdf",
        [
            ("intro", []),
            ("a square", [(_shape("blue", "square"), (50, 50, 200, 200))]),
            ("a circle", [(_shape("red", "circle"), (50, 50, 200, 200))]),
        ],
    )
    client = chromadb.PersistentClient(path=str(tmp_path / "chroma"))
    name = f"docs-{uuid.uuid4().hex[:8]}"
    options = DocumentOptions(mode="both", page_size=128)
    report = ImageIndex(demo_encoder, name, client=client).index_folder(
        tmp_path / "docs", progress=False, document_options=options
    )
    assert report.document_images == 5 and not report.failed
    settings = ServerSettings(collection=name, data_dir=tmp_path / "data")
    with TestClient(create_app(settings, encoder=demo_encoder, client=client)) as http:
        yield http, pdf


def _search(http: TestClient, text: str, where: dict[str, Any]) -> dict[str, Any]:
    response = http.post("/v1/search", json={"text": text, "k": 1, "where": where})
    assert response.status_code == 200, response.text
    hit: dict[str, Any] = response.json()["hits"][0]
    return hit


def test_hits_cite_the_page_and_the_route_serves_the_extracted_image(
    served: tuple[TestClient, Path],
) -> None:
    http, pdf = served
    hit = _search(http, "a large red circle", {"source_kind": "embedded"})
    assert hit["citation"] == "report.pdf, page 3"
    assert hit["metadata"]["source"] == str(pdf) and hit["metadata"]["page"] == 3
    image = http.get(hit["image_href"])
    assert image.status_code == 200 and image.headers["content-type"] == "image/png"
    assert hashlib.sha256(image.content).hexdigest() == hit["metadata"]["sha256"]
    assert Image.open(io.BytesIO(image.content)).size == (64, 64)


def test_the_rendered_page_is_served_too(served: tuple[TestClient, Path]) -> None:
    http, _ = served
    hit = _search(http, "a large blue square", {"page": 1})
    assert hit["citation"] == "report.pdf, page 1" and hit["metadata"]["source_kind"] == "page"
    page = http.get(hit["image_href"])
    assert page.status_code == 200
    assert Image.open(io.BytesIO(page.content)).size == (128, 128)


def test_a_changed_or_removed_document_is_not_served(served: tuple[TestClient, Path]) -> None:
    http, pdf = served
    hit = _search(http, "a large red circle", {"source_kind": "embedded"})
    stat = pdf.stat()
    os.utime(pdf, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))
    assert http.get(hit["image_href"]).status_code == 404
    pdf.unlink()
    assert http.get(hit["image_href"]).status_code == 404
    assert _search(http, "a large red circle", {"source_kind": "embedded"})["image_href"] is None


def test_the_cli_indexes_documents_with_a_mode_and_names_bad_ones(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from clip_multimodal.cli import main

    docs = tmp_path / "docs"
    make_pdf(docs / "a.pdf", [("one", [(_shape("red", "circle"), (10, 10, 100, 100))])])
    make_pdf(
        docs / "locked.pdf",
        [("x", [(_shape("blue", "cross"), (0, 0, 50, 50))])],
        user_password="pw",
    )
    common = ("--data-dir", str(tmp_path / "data"), "--no-progress")
    code = main(["index", str(docs), *common, "--documents", "both", "--min-image-size", "8"])
    out = capsys.readouterr().out
    assert code == 1  # one document failed; the other was indexed
    assert "added 2," in out and "2 documents holding 2 images" in out
    assert f"failed: {docs / 'locked.pdf'}: encrypted with a password" in out
