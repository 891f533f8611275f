"""Inputs are described readably wherever a failure names them: never an object's repr."""

from __future__ import annotations

import io
import re
from pathlib import Path

import pytest

from clip_multimodal.errors import ImageLoadError
from clip_multimodal.images import describe_source, load_image
from clip_multimodal.index import ImageIndex
from clip_multimodal.testing import FakeEncoder

_REPR = re.compile(r"object at 0x[0-9a-f]+")


def test_file_objects_are_described_by_kind_and_size_or_name(tmp_path: Path) -> None:
    assert describe_source(io.BytesIO(bytes(1234))) == "<BytesIO: 1234 B>"
    path = tmp_path / "a.png"
    path.write_bytes(b"x")
    with path.open("rb") as fh:
        assert describe_source(fh) == f"<BufferedReader: {path}>"
    assert describe_source(object()) == "<object>"


def test_failure_reasons_never_show_an_object_repr(tmp_path: Path) -> None:
    index = ImageIndex(FakeEncoder(), "describe", tmp_path / "chroma")
    report = index.add(
        [b"not an image at all", io.BytesIO(b"junk"), b"\x89PNG\r\n\x1a\n" + bytes(20)]
    )  # type: ignore[list-item]
    assert len(report.failed) == 3
    for item in report.failed:
        assert not _REPR.search(item.source + item.reason), item
    assert report.failed[1].source == "<BytesIO: 4 B>"
    with pytest.raises(ImageLoadError) as info:
        load_image(b"not an image at all")
    assert not _REPR.search(str(info.value))
