"""Write the seed corpus of tests/fuzz/fuzz_load_image.py: tiny images, valid and broken.

    python tests/fuzz/make_corpus.py   # rewrites tests/fuzz/corpus/

Each file starts with the harness's selector byte 0 (the rest is passed as bytes).
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

from PIL import Image, features

CORPUS = Path(__file__).with_name("corpus")


def _encode(fmt: str, mode: str, size: tuple[int, int] = (8, 6), **params: Any) -> bytes:
    image = Image.linear_gradient("L").resize(size).convert(mode)
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **params)
    return buffer.getvalue()


def seeds() -> dict[str, bytes]:
    valid = {
        "rgb.png": _encode("PNG", "RGB"),
        "rgba.png": _encode("PNG", "RGBA"),
        "grey16.png": _encode("PNG", "I;16"),
        "palette.gif": _encode("GIF", "P"),
        "rgb.jpg": _encode("JPEG", "RGB", quality=50),
        "cmyk.jpg": _encode("JPEG", "CMYK", quality=50),
        "rgb.bmp": _encode("BMP", "RGB", size=(4, 3)),
        "float.tif": _encode("TIFF", "F", size=(4, 3)),
        "lossless.webp": _encode("WEBP", "RGB", lossless=True),
        "alpha.webp": _encode("WEBP", "RGBA", quality=50),
    }
    if features.check("avif"):
        valid["rgb.avif"] = _encode("AVIF", "RGB", quality=30)
    broken = {
        "cut.png": valid["rgb.png"][: len(valid["rgb.png"]) // 2],
        "cut.jpg": valid["rgb.jpg"][: len(valid["rgb.jpg"]) * 2 // 3],
        "huge-header.png": _huge_png_header(),
        "flipped.webp": _flip(valid["lossless.webp"], 30),
    }
    if "rgb.avif" in valid:
        broken["flipped.avif"] = _flip(valid["rgb.avif"], 81)
    return {**valid, **{f"broken-{name}": data for name, data in broken.items()}}


def _flip(data: bytes, position: int) -> bytes:
    return data[:position] + bytes([data[position] ^ 0xFF]) + data[position + 1 :]


def _huge_png_header() -> bytes:
    """A PNG whose header claims 9400x9400 16-bit grey: the decode budget refuses it."""
    import struct
    import zlib

    header = struct.pack(">IIBBBBB", 9400, 9400, 16, 0, 0, 0, 0)
    crc = zlib.crc32(b"IHDR" + header) & 0xFFFFFFFF
    return b"\x89PNG\r\n\x1a\n" + struct.pack(">I", 13) + b"IHDR" + header + struct.pack(">I", crc)


def main() -> None:
    CORPUS.mkdir(exist_ok=True)
    for old in CORPUS.iterdir():
        old.unlink()
    for name, data in seeds().items():
        (CORPUS / name).write_bytes(b"\x00" + data)


if __name__ == "__main__":
    main()
