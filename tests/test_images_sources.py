"""The image layer interprets every input once: file objects everywhere, one stat, one header."""

from __future__ import annotations

import io
import os
import uuid
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from clip_multimodal.errors import ImageLoadError
from clip_multimodal.gpu import decode as gpu_decode
from clip_multimodal.images import (
    _header,
    classify,
    decode_base64,
    load_image,
    load_image_with_info,
    read_bytes,
    read_image_source,
)
from clip_multimodal.index import ImageIndex
from clip_multimodal.testing import FakeEncoder


def _png(size: tuple[int, int] = (24, 16)) -> bytes:
    rng = np.random.default_rng(3)
    array = rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, "PNG")
    return buffer.getvalue()


PNG = _png()


def _pixels(image: Image.Image) -> np.ndarray[Any, Any]:
    return np.asarray(image)


# -- file objects ------------------------------------------------------------------------


def test_file_objects_load_like_their_bytes(tmp_path: Path) -> None:
    expected = _pixels(load_image(PNG))
    read_part = io.BytesIO(PNG)
    read_part.seek(10)  # a BytesIO gives its whole buffer, wherever its position is
    path = tmp_path / "a.png"
    path.write_bytes(PNG)
    with path.open("rb") as handle:
        assert np.array_equal(_pixels(load_image(handle)), expected)
    assert np.array_equal(_pixels(load_image(read_part)), expected)
    assert read_bytes(io.BytesIO(PNG)) == PNG
    _, info = load_image_with_info(io.BytesIO(PNG))
    assert (info.uri, info.size, info.mime) == (None, len(PNG), "image/png")


def test_file_objects_are_classified_and_described_without_reading() -> None:
    buffer = io.BytesIO(PNG)
    kind = classify(buffer)
    assert (kind.kind, kind.desc) == ("file", f"<BytesIO: {len(PNG)} B>")
    assert buffer.tell() == 0


def test_bad_file_objects_fail_naming_the_input(tmp_path: Path) -> None:
    path = tmp_path / "a.png"
    path.write_bytes(PNG)
    with path.open("r", encoding="latin-1") as text, pytest.raises(ImageLoadError, match="'rb'"):
        load_image(text)
    with pytest.raises(ImageLoadError, match=r"BytesIO.*too large"):
        load_image(io.BytesIO(PNG), max_bytes=100)
    closed = io.BytesIO(PNG)
    closed.close()
    with pytest.raises(ImageLoadError, match=r"<BytesIO: closed>.*closed file"):
        load_image(closed)


def test_the_index_adds_a_bytesio_like_its_bytes(chroma_client: Any) -> None:
    index = ImageIndex(FakeEncoder(), f"sources-{uuid.uuid4().hex[:12]}", client=chroma_client)
    report = index.add([io.BytesIO(PNG), PNG])
    assert report.failed == []
    assert report.ids[0] == report.ids[1]  # the same content hash: one record
    with pytest.raises(TypeError, match="list"):
        index.add(io.BytesIO(PNG))  # type: ignore[arg-type]


def test_the_encoder_embeds_a_bytesio_like_its_bytes(demo_encoder: Any) -> None:
    vectors = demo_encoder.embed_images([io.BytesIO(PNG), PNG])
    np.testing.assert_allclose(vectors[0], vectors[1], atol=1e-6)


# -- one decoder of base64 ---------------------------------------------------------------


def test_one_base64_decoder_for_plain_and_data_uris() -> None:
    import base64

    text = base64.b64encode(PNG).decode()
    assert decode_base64(text) == PNG
    assert decode_base64(f"data:image/png;base64,{text}") == PNG
    assert decode_base64(text.rstrip("=")) == PNG  # padding dropped by many encoders
    with pytest.raises(ImageLoadError, match=r"^cannot load image node 7: invalid base64"):
        decode_base64("not base64!", desc="node 7")
    with pytest.raises(ImageLoadError, match="too large"):
        decode_base64(text, max_bytes=10)


# -- each file is stat'ed, opened and probed once on the ingest path ----------------------


class _Calls:
    """Counts os.stat/os.open/os.fstat on one path (or its descriptors) and PIL opens."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, path: Path) -> None:
        self.counts = {"stat": 0, "open": 0, "fstat": 0, "Image.open": 0, "scan": 0}
        self._fds: set[int] = set()
        self._path = str(path)
        real_stat, real_open, real_fstat = os.stat, os.open, os.fstat
        real_image_open = Image.open
        real_scan = _header.is_plain_jpeg

        def stat(p: Any, *args: Any, **kwargs: Any) -> Any:
            self._count("stat", p)
            return real_stat(p, *args, **kwargs)

        def open_(p: Any, *args: Any, **kwargs: Any) -> int:
            fd = real_open(p, *args, **kwargs)
            if self._count("open", p):
                self._fds.add(fd)
            return fd

        def fstat(fd: int) -> Any:
            if fd in self._fds:
                self.counts["fstat"] += 1
            return real_fstat(fd)

        def image_open(*args: Any, **kwargs: Any) -> Image.Image:
            self.counts["Image.open"] += 1
            return real_image_open(*args, **kwargs)

        def scan(*args: Any) -> bool:
            self.counts["scan"] += 1
            return bool(real_scan(*args))

        monkeypatch.setattr(os, "stat", stat)
        monkeypatch.setattr(os, "open", open_)
        monkeypatch.setattr(os, "fstat", fstat)
        monkeypatch.setattr(Image, "open", image_open)
        monkeypatch.setattr(_header, "is_plain_jpeg", scan)

    def _count(self, name: str, p: Any) -> bool:
        if isinstance(p, (str, os.PathLike)) and os.fspath(p) == self._path:
            self.counts[name] += 1
            return True
        return False


def test_reading_a_file_source_stats_opens_and_probes_it_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "a.png"
    path.write_bytes(PNG)
    calls = _Calls(monkeypatch, path)

    source = read_image_source(str(path))

    # A plain PNG's header comes from the byte scan: PIL does not parse it (the model will).
    assert calls.counts == {"stat": 1, "open": 1, "fstat": 1, "Image.open": 0, "scan": 1}
    assert (source.uri, source.size, source.plain) == (str(path), len(PNG), "png")
    assert source.mtime_ns == path.stat().st_mtime_ns


def test_the_device_reader_routes_from_the_source_without_a_second_scan(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "a.png"
    path.write_bytes(PNG)
    source = read_image_source(path)

    def no_scan(*_: Any) -> None:
        raise AssertionError("the header was scanned again")

    monkeypatch.setattr(gpu_decode, "plain_format", no_scan)
    loaded = gpu_decode.load_payload(source.payload, source.desc, info=source)
    assert loaded.error is None and loaded.pixels is not None
    assert tuple(loaded.pixels.shape) == (3, 16, 24)


def test_adding_a_file_to_the_index_stats_and_opens_it_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, chroma_client: Any
) -> None:
    path = tmp_path / "a.png"
    path.write_bytes(PNG)
    index = ImageIndex(FakeEncoder(), f"sources-{uuid.uuid4().hex[:12]}", client=chroma_client)
    calls = _Calls(monkeypatch, path)

    report = index.add([str(path)])

    assert report.failed == []
    assert (calls.counts["stat"], calls.counts["open"], calls.counts["fstat"]) == (1, 1, 1)
    assert calls.counts["scan"] == 1  # the header is probed once (the encoder decodes bytes)


def test_index_folder_reads_each_file_on_the_scans_stat_alone(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, chroma_client: Any
) -> None:
    folder = tmp_path / "photos"
    folder.mkdir()
    path = folder / "a.png"
    path.write_bytes(PNG)
    index = ImageIndex(FakeEncoder(), f"sources-{uuid.uuid4().hex[:12]}", client=chroma_client)
    calls = _Calls(monkeypatch, path)

    report = index.index_folder(folder, progress=False)

    assert (report.added, report.failed) == (1, [])
    # The folder walk's stat classifies the file: no os.stat of it, one open, one fstat.
    assert (calls.counts["stat"], calls.counts["open"], calls.counts["fstat"]) == (0, 1, 1)
    assert calls.counts["scan"] == 1  # the header is probed once (the encoder decodes bytes)


def test_an_unchanged_re_index_opens_and_decodes_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, chroma_client: Any
) -> None:
    folder = tmp_path / "photos"
    folder.mkdir()
    path = folder / "a.png"
    path.write_bytes(PNG)
    index = ImageIndex(FakeEncoder(), f"sources-{uuid.uuid4().hex[:12]}", client=chroma_client)
    index.index_folder(folder, progress=False)
    calls = _Calls(monkeypatch, path)

    report = index.index_folder(folder, progress=False)

    assert (report.unchanged, report.embedded) == (1, 0)
    assert calls.counts == {"stat": 0, "open": 0, "fstat": 0, "Image.open": 0, "scan": 0}
