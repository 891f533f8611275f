"""Header checks that route an image without PIL: a few byte reads, not a parser.

At thousands of images per second the readers share one GIL, and PIL's header parse
(about 50 µs, in Python) would cap the whole pipeline. These scans read only the markers
that decide whether the fast decoders reproduce `load_image` exactly; anything unusual
answers False and goes to PIL.
"""

from __future__ import annotations

__all__ = ["is_plain_jpeg", "is_plain_png"]

_SOF = frozenset({0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF})
_STANDALONE = frozenset({0x01, 0xD8, *range(0xD0, 0xD8)})  # markers without a length
_APP1, _APP14, _SOS = 0xE1, 0xEE, 0xDA
_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def _u16(data: bytes, pos: int, little: bool = False) -> int:
    return int.from_bytes(data[pos : pos + 2], "little" if little else "big")


def _exif_orientation(tiff: bytes) -> int | None:
    """The orientation tag of IFD0 in a TIFF block; None when absent or unreadable."""
    little = tiff[:2] == b"II"
    if not little and tiff[:2] != b"MM":
        return None
    ifd = int.from_bytes(tiff[4:8], "little" if little else "big")
    if ifd + 2 > len(tiff):
        return None
    for i in range(_u16(tiff, ifd, little)):
        entry = ifd + 2 + 12 * i
        if entry + 12 > len(tiff):
            return None
        if _u16(tiff, entry, little) == 0x0112:
            return _u16(tiff, entry + 8, little)
    return None


def is_plain_jpeg(data: bytes, max_pixels: int) -> bool:
    """An 8-bit, 1- or 3-component JPEG without EXIF rotation or Adobe colour transform.

    Those are what nvJPEG (or libjpeg-turbo) decodes to the same RGB pixels as `load_image`.
    """
    if data[:3] != b"\xff\xd8\xff":
        return False
    pos, end = 2, len(data)
    while pos + 4 <= end:
        if data[pos] != 0xFF:
            return False  # lost sync: a malformed header, PIL will say what is wrong
        marker = data[pos + 1]
        if marker == 0xFF:  # fill byte
            pos += 1
            continue
        if marker in _STANDALONE:
            pos += 2
            continue
        length = _u16(data, pos + 2)
        segment = data[pos + 4 : pos + 2 + length]
        if marker == _APP14:  # Adobe: CMYK/YCCK or an explicit colour transform
            return False
        if marker == _APP1 and segment[:6] == b"Exif\x00\x00":
            if _exif_orientation(segment[6:]) not in (None, 1):
                return False
        elif marker in _SOF:
            if len(segment) < 6:
                return False
            height, width = _u16(segment, 1), _u16(segment, 3)
            return segment[0] == 8 and segment[5] in (1, 3) and 0 < width * height <= max_pixels
        elif marker == _SOS:
            return False  # scan data before any frame header
        pos += 2 + length
    return False


def is_plain_png(data: bytes, max_pixels: int) -> bool:
    """An 8-bit grey or RGB PNG without a transparency chunk."""
    if data[:8] != _PNG_SIGNATURE or len(data) < 33 or data[12:16] != b"IHDR":
        return False
    width, height = int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")
    bit_depth, colour_type = data[24], data[25]
    if bit_depth != 8 or colour_type not in (0, 2) or not 0 < width * height <= max_pixels:
        return False
    pos = 8
    while pos + 8 <= len(data):  # tRNS, if any, comes before the first IDAT
        length, kind = int.from_bytes(data[pos : pos + 4], "big"), data[pos + 4 : pos + 8]
        if kind == b"tRNS":
            return False
        if kind in (b"IDAT", b"IEND"):
            return True
        pos += 12 + length
    return False
