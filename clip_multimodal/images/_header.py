"""The one header reader: what an image is, from its header, before any pixel is decoded.

Two readings agree here. `read_header` gives the format, oriented size and decode cost and
applies the loader's caps; `plain_format` scans a few bytes (no PIL: at thousands of images a
second PIL's 50 µs parse would cap the device pipeline) and names the JPEGs and PNGs that a
standard decoder turns into `load_image`'s pixels. For those, `read_header` takes its facts
from the same scan; every other image it opens with PIL. Both read EXIF orientation with
`_pixels`' constants.
"""

from __future__ import annotations

import io
import re
import threading
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Literal, NamedTuple

from PIL import Image, UnidentifiedImageError

from clip_multimodal._pixels import (
    ORIENTATION_TAG,
    ROTATED_ORIENTATIONS,
    decode_cost,
    header_decode_cost,
    orientation,
)
from clip_multimodal.errors import ImageLoadError
from clip_multimodal.images._kinds import describe_source
from clip_multimodal.images._limits import DEFAULT_MAX_DECODE_BYTES, DEFAULT_MAX_PIXELS

__all__ = [
    "RAW_MIME",
    "ImageHeader",
    "PlainFormat",
    "is_plain_jpeg",
    "is_plain_png",
    "jpeg_size",
    "plain_format",
    "read_header",
]

#: A format the fast decoders reproduce exactly (see `plain_format`).
PlainFormat = Literal["jpeg", "png"]

RAW_MIME = "application/octet-stream"  # PIL images and arrays have no encoded format
# PIL's own table (Image.MIME) fills only once a plugin has been loaded: in a fresh process
# that has opened no image yet it is empty.
_PLAIN_MIME = {"jpeg": "image/jpeg", "png": "image/png"}
# PIL's bomb limit and the warnings filters are process globals: one lock keeps our own
# threads from interleaving their temporary changes to them.
_PIL_GLOBALS = threading.Lock()


@contextmanager
def pil_bomb_guard(max_pixels: int | None) -> Iterator[bool]:
    """Make PIL's bomb warning an error; if our cap is above PIL's limit, lift it meanwhile.

    Yields whether PIL's limit was lifted. Decided under the lock, so that no thread mistakes
    another's temporary lift for the real limit.
    """
    with _PIL_GLOBALS, warnings.catch_warnings():
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        saved = Image.MAX_IMAGE_PIXELS
        lift = saved is not None and (max_pixels is None or max_pixels > saved)
        if lift:
            Image.MAX_IMAGE_PIXELS = None  # our own check, right after open, is the cap
        try:
            yield lift
        finally:
            Image.MAX_IMAGE_PIXELS = saved


def _check_pixels(size: tuple[int, int], max_pixels: int | None, desc: str) -> None:
    width, height = size
    if width <= 0 or height <= 0:
        raise ImageLoadError(desc, f"has no pixels ({width}x{height})")
    if max_pixels is not None and width * height > max_pixels:
        raise ImageLoadError(
            desc,
            f"too large: {width}x{height} = {width * height} pixels exceeds "
            f"max_pixels={max_pixels}; pass a larger max_pixels (or None) if you trust it",
        )


@contextmanager
def pil_errors(desc: str, reason: str) -> Iterator[None]:
    """Map every failure of a decoder to one ImageLoadError.

    PIL and its codec plugins raise many types for damaged data (OSError, SyntaxError,
    struct.error, and RuntimeError from the AVIF plugin); none may escape as anything else,
    or one bad image would sink a whole batch.
    """
    try:
        yield
    except ImageLoadError:
        raise
    except UnidentifiedImageError as exc:
        raise ImageLoadError(desc, "not an image PIL can decode") from exc
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise ImageLoadError(desc, f"too large, possible decompression bomb ({exc})") from exc
    except MemoryError as exc:
        raise ImageLoadError(desc, "out of memory while decoding") from exc
    except Exception as exc:
        raise ImageLoadError(desc, f"{reason} ({type(exc).__name__}: {exc})") from exc


def open_checked(data: bytes, desc: str, max_pixels: int | None) -> Image.Image:
    if not data:
        raise ImageLoadError(desc, "empty input (0 bytes)")
    image = Image.open(io.BytesIO(data))
    _check_pixels(image.size, max_pixels, desc)
    return image


def check_budget(image: Image.Image, max_decode_bytes: int | None, desc: str) -> int:
    """The image's decode cost; ImageLoadError if it is over the budget."""
    cost = decode_cost(image)
    if max_decode_bytes is not None and cost > max_decode_bytes:
        raise ImageLoadError(
            desc,
            f"too large to decode: {image.width}x{image.height} {image.format or ''} "
            f"{image.mode} needs about {cost // 2**20} MiB, above max_decode_bytes="
            f"{max_decode_bytes} ({max_decode_bytes // 2**20} MiB); pass a larger "
            "max_decode_bytes if you trust it",
        )
    return cost


class ImageHeader(NamedTuple):
    """What an image's header says, before any pixel is decoded.

    Attributes:
        mime: the format's MIME type, e.g. "image/png".
        width: the width after EXIF orientation.
        height: the height after EXIF orientation.
        decode_cost: the bytes of memory decoding it needs at most (see `decode_cost`).
        plain: "jpeg" or "png" where a standard decoder gives `load_image`'s pixels exactly
            (see `plain_format`); None for every other image.
    """

    mime: str
    width: int
    height: int
    decode_cost: int
    plain: PlainFormat | None = None


def read_header(
    data: bytes,
    *,
    max_pixels: int | None = DEFAULT_MAX_PIXELS,
    max_decode_bytes: int | None = DEFAULT_MAX_DECODE_BYTES,
    desc: str | None = None,
) -> ImageHeader:
    """Format and oriented size from the header alone, with `load_image`'s caps applied.

    An image that `load_image` would refuse for its pixel count or its decode budget is
    refused here too, before any pixel is decoded.

    Args:
        data: the encoded bytes.
        max_pixels: as for `load_image`.
        max_decode_bytes: as for `load_image`.
        desc: how errors name the input (default: its size in bytes).

    Raises:
        ImageLoadError: the header is not an image's, or the image is over a cap.
    """
    plain = plain_format(data, DEFAULT_MAX_PIXELS)
    if plain is not None:
        header = _plain_header(data, plain, max_pixels, max_decode_bytes)
        if header is not None:
            return header
    desc = desc or describe_source(data)
    with pil_errors(desc, "cannot decode"), pil_bomb_guard(max_pixels):
        image = open_checked(data, desc, max_pixels)
        cost = check_budget(image, max_decode_bytes, desc)
        width, height = image.size
        if orientation(image) in ROTATED_ORIENTATIONS:
            width, height = height, width
        mime = Image.MIME.get(image.format or "", RAW_MIME)
    return ImageHeader(mime, width, height, cost, plain)


def _plain_header(
    data: bytes, plain: PlainFormat, max_pixels: int | None, max_decode_bytes: int | None
) -> ImageHeader | None:
    """A plain JPEG's or PNG's header from the byte scan alone, as PIL would read it (PIL's
    parse costs more than reading and hashing a small file); None when the image is over a
    cap, so that PIL's path raises the same error as for any other image."""
    width, height, mode = _plain_facts(data, plain)
    fmt = "JPEG" if plain == "jpeg" else "PNG"
    cost = header_decode_cost(width, height, mode, fmt, turned=False)  # plain: never turned
    if max_pixels is not None and width * height > max_pixels:
        return None
    if max_decode_bytes is not None and cost > max_decode_bytes:
        return None
    return ImageHeader(_PLAIN_MIME[plain], width, height, cost, plain)


def _plain_facts(data: bytes, plain: PlainFormat) -> tuple[int, int, str]:
    """(width, height, PIL mode) of an image `plain_format` named."""
    if plain == "png":  # IHDR: width, height, bit depth, colour type (0 grey, 2 RGB)
        width, height = int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")
        return width, height, "L" if data[25] == 0 else "RGB"
    for marker, segment in _jpeg_segments(data):
        if marker in _SOF:  # precision, height, width, components
            return _u16(segment, 3), _u16(segment, 1), "L" if segment[5] == 1 else "RGB"
    raise AssertionError("plain_format names only JPEGs with a frame header")


# --- the byte scan: which images the fast decoders reproduce exactly ----------------------

_SOF = frozenset({0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF})
_STANDALONE = frozenset({0x01, 0xD8, *range(0xD0, 0xD8)})  # markers without a length
_APP1, _APP14, _SOS, _BASELINE = 0xE1, 0xEE, 0xDA, 0xC0
_EOI = b"\xff\xd9"
_XMP = b"http://ns.adobe.com/xap/1.0/\x00"  # the APP1 segment PIL reads XMP from
_XMP_ORIENTATION = re.compile(rb'tiff:Orientation(?:="|>)([0-9])')  # PIL's own pattern
# PNG chunks that make PIL rotate: EXIF, or XMP (in iTXt/zTXt/tEXt) with a tiff:Orientation.
_PNG_ORIENTATION_MARKS = (b"eXIf", b"XML:com.adobe.xmp")
_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def plain_format(data: bytes, max_pixels: int = DEFAULT_MAX_PIXELS) -> PlainFormat | None:
    """ "jpeg" or "png" where a standard decoder gives `load_image`'s pixels.

    libjpeg-turbo and libpng give them exactly; nvJPEG within the tolerance benchmarks/gpu.py
    measures (its chroma upsampling differs). That is complete baseline 8-bit RGB or grey
    JPEGs without EXIF/XMP rotation or an Adobe colour transform, and 8-bit RGB or grey PNGs
    without transparency or orientation metadata, within max_pixels. Everything else (CMYK,
    alpha, palettes, 16 bits, rotations, progressive or truncated files, other formats, bad
    headers) is None: PIL decodes it, and also names what is wrong.
    """
    if is_plain_jpeg(data, max_pixels):
        return "jpeg"
    if is_plain_png(data, max_pixels):
        return "png"
    return None


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
        if _u16(tiff, entry, little) == ORIENTATION_TAG:
            return _u16(tiff, entry + 8, little)
    return None


def _jpeg_segments(data: bytes) -> Iterator[tuple[int, bytes]]:
    """(marker, payload) of each header segment, up to and including the first SOS."""
    if data[:3] != b"\xff\xd8\xff":
        return
    pos, end = 2, len(data)
    while pos + 4 <= end:
        if data[pos] != 0xFF:
            return  # lost sync: a malformed header, PIL will say what is wrong
        marker = data[pos + 1]
        if marker == 0xFF:  # fill byte
            pos += 1
            continue
        if marker in _STANDALONE:
            pos += 2
            continue
        length = _u16(data, pos + 2)
        yield marker, data[pos + 4 : pos + 2 + length]
        if marker == _SOS:
            return
        pos += 2 + length


def _rotates(marker: int, segment: bytes) -> bool:
    """An EXIF or XMP orientation other than upright: PIL's `exif_transpose` turns it."""
    if marker != _APP1:
        return False
    if segment[:6] == b"Exif\x00\x00":
        return _exif_orientation(segment[6:]) not in (None, 1)  # 1: upright
    if segment.startswith(_XMP):  # getexif falls back to XMP's tiff:Orientation
        return any(value != b"1" for value in _XMP_ORIENTATION.findall(segment))
    return False


def jpeg_size(data: bytes) -> tuple[int, int] | None:
    """(height, width) from a JPEG's frame header; None when there is none to read."""
    for marker, segment in _jpeg_segments(data):
        if marker in _SOF and len(segment) >= 5:
            return _u16(segment, 1), _u16(segment, 3)
    return None


def is_plain_jpeg(data: bytes, max_pixels: int) -> bool:
    """A complete baseline 8-bit, 1- or 3-component JPEG without EXIF or XMP rotation or
    an Adobe colour transform.

    Those are what nvJPEG's batched decoder (or libjpeg-turbo) takes and turns into
    `load_image`'s RGB pixels (within the tolerance benchmarks/gpu.py measures). Progressive,
    lossless and arithmetic-coded frames (SOF1..SOF15), and files cut short (no EOI at the
    end), are not: nvJPEG decodes the first one at a time on the host under a global lock and
    refuses the others, which fails its whole batch.
    """
    frame = False
    for marker, segment in _jpeg_segments(data):
        if marker == _APP14 or _rotates(marker, segment):
            return False  # Adobe: CMYK/YCCK or an explicit colour transform
        if marker in _SOF:
            if marker != _BASELINE or len(segment) < 6 or frame:
                return False
            height, width = _u16(segment, 1), _u16(segment, 3)
            frame = segment[0] == 8 and segment[5] in (1, 3) and 0 < width * height <= max_pixels
            if not frame:
                return False
        elif marker == _SOS:  # scan data before any frame header is not plain either
            return frame and data.rstrip(b"\x00").endswith(_EOI)
    return False


def is_plain_png(data: bytes, max_pixels: int) -> bool:
    """An 8-bit grey or RGB PNG without a transparency chunk, EXIF or XMP."""
    if data[:8] != _PNG_SIGNATURE or len(data) < 33 or data[12:16] != b"IHDR":
        return False
    if any(mark in data for mark in _PNG_ORIENTATION_MARKS):
        return False  # PIL may rotate it; such chunks may follow IDAT, so look everywhere
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
