"""The byte-scan header of plain JPEGs and PNGs agrees with PIL's reading, caps included."""

from __future__ import annotations

import io
from typing import Any

import numpy as np
import pytest
from PIL import Image

from clip_multimodal._pixels import decode_cost
from clip_multimodal.errors import ImageLoadError
from clip_multimodal.images import ImageHeader, _header, plain_format, read_header


def _encoded(size: tuple[int, int], mode: str, fmt: str, seed: int, **params: Any) -> bytes:
    rng = np.random.default_rng(seed)
    shape = (size[1], size[0]) + (() if mode == "L" else (3,))
    image = Image.fromarray(rng.integers(0, 256, shape, dtype=np.uint8), mode)
    out = io.BytesIO()
    image.save(out, fmt, **params)
    return out.getvalue()


def _pil_header(data: bytes) -> ImageHeader:
    """What PIL reads from the header, as `read_header` did for every image before."""
    image = Image.open(io.BytesIO(data))
    mime = Image.MIME[image.format or ""]
    return ImageHeader(mime, image.width, image.height, decode_cost(image), plain_format(data))


PLAIN = [
    (size, mode, fmt, params)
    for size in ((1, 1), (17, 5), (224, 224), (640, 33))
    for mode in ("L", "RGB")
    for fmt, params in (("PNG", {}), ("JPEG", {"quality": 90}), ("JPEG", {"subsampling": 0}))
]


@pytest.mark.parametrize(("size", "mode", "fmt", "params"), PLAIN)
def test_the_byte_scan_reads_a_plain_header_as_pil_does(
    size: tuple[int, int], mode: str, fmt: str, params: dict[str, Any], monkeypatch: Any
) -> None:
    data = _encoded(size, mode, fmt, seed=size[0], **params)
    assert plain_format(data) is not None

    def no_pil(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("PIL opened a plain image")

    monkeypatch.setattr(_header, "open_checked", no_pil)
    assert read_header(data) == _pil_header(data)


def test_plain_images_over_a_cap_fail_as_any_image_does() -> None:
    data = _encoded((64, 48), "RGB", "PNG", seed=1)
    with pytest.raises(ImageLoadError, match="exceeds max_pixels=1000"):
        read_header(data, max_pixels=1000)
    with pytest.raises(ImageLoadError, match="max_decode_bytes=1024"):
        read_header(data, max_decode_bytes=1024)
    grey = _encoded((64, 48), "L", "JPEG", seed=1)
    assert read_header(grey, max_pixels=64 * 48).width == 64  # at the cap: allowed


def test_other_images_are_still_read_by_pil() -> None:
    progressive = _encoded((40, 30), "RGB", "JPEG", seed=2, progressive=True)
    palette = io.BytesIO()
    Image.new("P", (20, 10)).save(palette, "PNG")
    for data in (progressive, palette.getvalue()):
        assert plain_format(data) is None
        assert read_header(data) == _pil_header(data)


def test_a_fresh_process_reads_a_plain_header_before_pil_has_opened_anything(
    tmp_path: Any,
) -> None:
    import subprocess
    import sys

    path = tmp_path / "a.png"
    path.write_bytes(_encoded((5, 4), "RGB", "PNG", seed=3))
    code = (
        "import sys; from clip_multimodal.images import read_header; "
        "h = read_header(open(sys.argv[1], 'rb').read()); print(h.mime, h.width, h.height)"
    )
    done = subprocess.run(
        [sys.executable, "-c", code, str(path)], capture_output=True, text=True, check=False
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["image/png", "5", "4"]


def test_a_plain_png_with_a_broken_header_checksum_fails_alone_at_the_model(
    tmp_path: Any, demo_encoder: Any
) -> None:
    from clip_multimodal.index import ImageIndex

    broken = bytearray(_encoded((30, 20), "RGB", "PNG", seed=4))
    broken[29] ^= 0xFF  # the IHDR chunk's CRC: the byte scan reads past it, PIL does not
    assert read_header(bytes(broken)).plain == "png"
    (tmp_path / "bad.png").write_bytes(bytes(broken))
    (tmp_path / "good.png").write_bytes(_encoded((30, 20), "RGB", "PNG", seed=5))
    index = ImageIndex(demo_encoder, "crc", tmp_path / "db")
    report = index.add([tmp_path / "bad.png", tmp_path / "good.png"])
    assert (report.added, [f.source for f in report.failed]) == (1, [str(tmp_path / "bad.png")])
    assert "PIL can decode" in report.failed[0].reason and index.count() == 1
