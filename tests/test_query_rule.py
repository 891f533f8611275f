"""How a str query is read: the query rule (text or image), its speed on hostile text, and
`ImageIndex.search` / `max_marginal_relevance` applying it (a path-like str never becomes text).
"""

from __future__ import annotations

import io
import time
import uuid
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from clip_multimodal.errors import ImageLoadError
from clip_multimodal.images import _classify, describe_source, is_image_query, is_image_reference
from clip_multimodal.index import ImageIndex
from clip_multimodal.testing import FakeEncoder

PATH_LIKE = [
    "./missing.png",
    ".data/demo-images",
    "../photos",
    "/no/such/file",
    "~/Pictures/cat",
    "~",
    "photos/cat",
    "photos\\cat",
    "\\\\server\\share\\cat",
    "C:\\Users\\me\\cat",
    "c:/photos/cat",
    "cat.png",
    "holiday photo.JPEG",
    "my cat.webp",
    "https://example.com/cat",
    "HTTP://EXAMPLE.COM/CAT",
    "ftp://example.com/cat.png",
    "file:///etc/hostname",
    "data:image/png;base64,iVBORw0KGgo=",
    "AC/DC",
]
TEXT_LIKE = [
    "a photo of a cat",
    "a black/white cat",
    "cats and/or dogs",
    "png images of cats",
    "the .png format",
    "~50 cats",
    "a cat.",
    "what is this? a cat: maybe",
    "",
    " ",
    "x" * 10_000,
]


@pytest.mark.parametrize("query", PATH_LIKE)
def test_a_path_or_url_reads_as_an_image(query: str) -> None:
    assert is_image_query(query)


@pytest.mark.parametrize("query", TEXT_LIKE)
def test_words_read_as_text(query: str) -> None:
    assert not is_image_query(query)


def test_an_existing_file_reads_as_an_image_whatever_its_name(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "a cat").write_bytes(b"not even an image")
    assert is_image_query("a cat")
    assert not is_image_query("a dog")


# -- linear time on hostile text (issue 12: quadratic regex) --------------------------------


def timed(text: str) -> float:
    """Seconds to classify and describe `text` every way the core does."""
    start = time.perf_counter()
    _classify(text)
    is_image_reference(text)
    is_image_query(text)
    describe_source(text)
    return time.perf_counter() - start


@pytest.mark.parametrize(
    "text",
    [
        "a" + "\n" * 100_000 + "!",
        "a" + "\r\n" * 50_000 + "!",
        "A" * 1_000_000 + "!",
        "a" + "\n" * 100_000 + " " * 100_000 + "!",
        "word " * 200_000,
        "/" + "a/" * 500_000,
        "~" + "a" * 1_000_000 + " ",
    ],
    ids=["newlines", "crlf", "1MB-base64ish", "newlines-spaces", "1MB-words", "1MB-path", "tilde"],
)
def test_classifying_long_hostile_text_takes_well_under_a_second(text: str) -> None:
    assert timed(text) < 0.5


def test_searching_100k_newlines_is_fast(index: ImageIndex) -> None:
    start = time.perf_counter()
    index.search("a" + "\n" * 100_000 + "!", k=1)
    assert time.perf_counter() - start < 1.0


# -- ImageIndex.search and max_marginal_relevance apply the rule ----------------------------


@pytest.fixture
def index(tmp_path: Path) -> ImageIndex:
    idx = ImageIndex(FakeEncoder(), f"q-{uuid.uuid4().hex[:12]}", tmp_path / "chroma")
    buffer = io.BytesIO()
    Image.new("RGB", (16, 16), (200, 10, 10)).save(buffer, format="PNG")
    idx.add([buffer.getvalue()])
    return idx


@pytest.mark.parametrize("query", ["./missing.png", ".data/demo-images", "photos/cat", "x.png"])
def test_a_missing_path_raises_instead_of_becoming_text(index: ImageIndex, query: str) -> None:
    for search in (index.search, index.max_marginal_relevance):
        with pytest.raises(ImageLoadError, match='query_type="text"') as info:
            search(query, k=1)
        assert query in str(info.value)


def test_a_folder_query_names_the_folder(index: ImageIndex, tmp_path: Path) -> None:
    with pytest.raises(ImageLoadError, match="directory"):
        index.search(str(tmp_path), k=1)


def test_query_type_text_reads_a_path_like_str_as_text(index: ImageIndex) -> None:
    encoder: Any = index.encoder
    encoder.calls.clear()
    assert index.search("./missing.png", k=1, query_type="text")
    assert index.max_marginal_relevance("AC/DC", k=1, query_type="text")
    assert index.search("a black/white cat", k=1)
    assert [c[0] for c in encoder.calls] == ["embed_texts"] * 3


def test_an_existing_path_still_searches_by_image(index: ImageIndex, tmp_path: Path) -> None:
    path = tmp_path / "red.png"
    Image.new("RGB", (16, 16), (200, 10, 10)).save(path)
    encoder: Any = index.encoder
    encoder.calls.clear()
    hits = index.search(str(path), k=1)
    assert [c[0] for c in encoder.calls] == ["embed_images"]
    assert hits[0].score == pytest.approx(1.0, abs=1e-5)


def test_the_demo_model_refuses_a_mistyped_path(demo_encoder: Any, tmp_path: Path) -> None:
    idx = ImageIndex(demo_encoder, f"q-{uuid.uuid4().hex[:12]}", tmp_path / "chroma")
    with pytest.raises(ImageLoadError, match="no such file"):
        idx.search(str(tmp_path / "missing.png"), k=1)
