"""Which decoder each JPEG and PNG goes to, decided from the header (issue 19, items 4 and 5).

The device decoder gets only complete, baseline, upright JPEGs: an XMP-rotated one would come
out unrotated, and progressive, lossless, arithmetic-coded or truncated ones are decoded one at
a time on the host or fail nvJPEG's whole batch. Each goes to PIL up front instead.
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from PIL import Image, PngImagePlugin

from clip_multimodal import CLIPEncoder
from clip_multimodal.gpu import GPUImagePipeline, load_payload, route
from clip_multimodal.images import load_image
from tests import model_builders as mb


def _picture(width: int = 100, height: int = 60) -> Image.Image:
    """Distinct quadrants, so a rotation or a flip changes the pixels."""
    grid = np.zeros((height, width, 3), np.uint8)
    grid[: height // 2, : width // 2] = (220, 30, 30)
    grid[: height // 2, width // 2 :] = (30, 220, 30)
    grid[height // 2 :, : width // 2] = (30, 30, 220)
    grid[height // 2 :, width // 2 :] = (240, 240, 240)
    return Image.fromarray(grid)


def _save(image: Image.Image, fmt: str, **kwargs: Any) -> bytes:
    buf = io.BytesIO()
    image.save(buf, fmt, **kwargs)
    return buf.getvalue()


def _xmp(orientation: int) -> bytes:
    return (
        b'<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/'
        b'22-rdf-syntax-ns#"><rdf:Description xmlns:tiff="http://ns.adobe.com/tiff/1.0/" '
        b'tiff:Orientation="%d"/></rdf:RDF></x:xmpmeta>' % orientation
    )


def _with_frame(marker: int) -> bytes:
    """A baseline JPEG whose frame header names another coding process (SOF marker)."""
    data = bytearray(_save(_picture(), "JPEG"))
    pos = data.index(b"\xff\xc0")
    data[pos + 1] = marker
    return bytes(data)


def _png_with_text_xmp() -> bytes:
    info = PngImagePlugin.PngInfo()
    info.add_itxt("XML:com.adobe.xmp", _xmp(6).decode())
    return _save(_picture(), "PNG", pnginfo=info)


def _png_with_exif() -> bytes:
    exif = Image.Exif()
    exif[0x0112] = 6
    return _save(_picture(), "PNG", exif=exif.tobytes())


def _reference(data: bytes) -> torch.Tensor:
    return torch.from_numpy(np.array(load_image(data))).permute(2, 0, 1)


BASELINE = _save(_picture(), "JPEG")
KINDS: dict[str, tuple[bytes, str]] = {
    "baseline": (BASELINE, "jpeg"),
    "baseline, zero padding after EOI": (BASELINE + b"\x00" * 16, "jpeg"),
    "XMP orientation 1": (_save(_picture(), "JPEG", xmp=_xmp(1)), "jpeg"),
    "XMP orientation 6": (_save(_picture(), "JPEG", xmp=_xmp(6)), "pil"),
    "XMP orientation 3": (_save(_picture(), "JPEG", xmp=_xmp(3)), "pil"),
    "progressive (SOF2)": (_save(_picture(), "JPEG", progressive=True), "pil"),
    "extended sequential (SOF1)": (_with_frame(0xC1), "pil"),
    "lossless (SOF3)": (_with_frame(0xC3), "pil"),
    "arithmetic-coded (SOF9)": (_with_frame(0xC9), "pil"),
    "truncated": (BASELINE[: len(BASELINE) * 2 // 3], "pil"),
    "PNG": (_save(_picture(), "PNG"), "png"),
    "PNG with EXIF orientation": (_png_with_exif(), "pil"),
    "PNG with XMP orientation": (_png_with_text_xmp(), "pil"),
}


@pytest.mark.parametrize("kind", list(KINDS))
def test_route(kind: str) -> None:
    data, expected = KINDS[kind]
    assert route(data) == expected


@pytest.mark.parametrize(
    "kind",
    [
        "XMP orientation 6",
        "XMP orientation 3",
        "PNG with EXIF orientation",
        "PNG with XMP orientation",
    ],
)
def test_rotated_images_come_out_as_load_image_gives_them(kind: str) -> None:
    data, _ = KINDS[kind]
    loaded = load_payload(data, kind)
    assert loaded.error is None and loaded.pixels is not None
    expected = _reference(data)
    if kind != "XMP orientation 3":
        assert expected.shape == (3, 100, 60)  # a 100x60 picture turned on its side
    assert torch.equal(loaded.pixels, expected)


@pytest.fixture(scope="module")
def tiny_encoder(tmp_path_factory: pytest.TempPathFactory) -> CLIPEncoder:
    folder = mb.save_model_dir(tmp_path_factory.mktemp("tiny"), mb.causal_cfg())
    return CLIPEncoder(f"local-dir:{folder}", device="cpu", batch_size=16)


def test_the_device_decoder_sees_only_plain_jpegs_in_one_call(
    tiny_encoder: CLIPEncoder, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """Every other kind is routed up front: no failed batched call, no one-by-one re-decode."""
    import torchvision.io

    real = torchvision.io.decode_jpeg
    calls: list[int] = []

    def decode_jpeg(views: list[torch.Tensor], mode: Any, device: Any) -> list[torch.Tensor]:
        calls.append(len(views))
        return real(views, mode=mode, device=device)

    monkeypatch.setattr(torchvision.io, "decode_jpeg", decode_jpeg)
    names = list(KINDS)
    paths = []
    for i, name in enumerate(names):
        paths.append(tmp_path / f"{i}.img")
        paths[-1].write_bytes(KINDS[name][0])
    result = GPUImagePipeline(tiny_encoder).embed_files(paths)
    plain = sum(1 for name in names if KINDS[name][1] == "jpeg")
    assert calls == [plain]
    reference = tiny_encoder.try_embed_images(paths)
    assert result.indices == reference.indices
    assert set(result.errors) == set(reference.errors)  # what PIL refuses, by name
    for i in result.errors:
        assert f"{i}.img" in str(result.errors[i])
    cosine = (result.vectors * reference.vectors).sum(axis=1)
    assert cosine.min() > 0.999
