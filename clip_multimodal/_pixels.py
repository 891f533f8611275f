"""Pixels in memory: what decoding an image costs, read from its header, and the
conversion of every PIL mode to RGB, done in strips so that it stays within that cost.

The loader (`clip_multimodal.images`) enforces the decode budget with `decode_cost` and
normalizes with `to_rgb`; nothing here raises for bad input.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
from PIL import Image

__all__ = [
    "ORIENTATION_TAG",
    "ROTATED_ORIENTATIONS",
    "decode_cost",
    "header_decode_cost",
    "orientation",
    "to_rgb",
]

ORIENTATION_TAG = 0x0112  # EXIF's orientation tag, read here and by the header byte scan
ROTATED_ORIENTATIONS = frozenset({5, 6, 7, 8})  # EXIF values that swap width and height
_ALPHA_MODES = frozenset({"RGBA", "LA", "PA", "RGBa", "La"})

# Decoders that build the whole frame in their own buffer (and hand PIL a copy) before PIL
# stores it: each such frame costs up to 4 bytes a pixel on top of PIL's own pixels.
# JPEG, PNG, GIF and BMP decode row by row into PIL's buffer and need none.
_STREAMED = frozenset({"JPEG", "MPO", "PNG", "GIF", "BMP", "DIB", "PPM", "TGA", "ICO", "PCX"})
_FRAME_COPIES = {"WEBP": 4, "AVIF": 3, "HEIF": 3, "JPEG2000": 5}
_DECODER_STATE = 8 * 2**20  # codec state and buffers that do not grow with the image
_STRIP_PIXELS = 2**20  # a non-RGB image is converted this many pixels at a time
_STRIP_BYTES_PER_PIXEL = 48  # float64 temporaries of a 16-bit or float strip, at most


def _stored_bytes_per_pixel(mode: str) -> int:
    # PIL keeps 1- and 8-bit single-band modes in one byte, 16-bit grey in two, and every
    # other mode (RGB included) in four bytes a pixel.
    if mode in ("1", "L", "P"):
        return 1
    return 2 if mode.startswith("I;16") else 4


def decode_cost(image: Image.Image) -> int:
    """Bytes of memory that decoding an opened image to RGB needs at most, from its header.

    Counts PIL's decoded pixels, any whole-frame buffer of the format's decoder, the copy an
    EXIF rotation makes, and the RGB result of a conversion (done in strips, so the
    temporaries of 16-bit and float images stay small).
    """
    return header_decode_cost(
        image.width, image.height, image.mode, image.format, orientation(image) != 1
    )


def header_decode_cost(width: int, height: int, mode: str, fmt: str | None, turned: bool) -> int:
    """`decode_cost` from the header's facts: size, PIL mode, PIL format, and whether EXIF
    orientation turns the image (a copy)."""
    pixels = width * height
    stored = _stored_bytes_per_pixel(mode)
    frames = 0 if fmt in _STREAMED else _FRAME_COPIES.get(fmt or "", 1)
    cost = _DECODER_STATE + pixels * (stored + 4 * frames)
    if turned:
        cost += pixels * stored
    if mode != "RGB":
        cost += pixels * 4 + min(pixels, _STRIP_PIXELS) * _STRIP_BYTES_PER_PIXEL
    return cost


def orientation(image: Image.Image) -> int:
    """The EXIF orientation known from the header (PIL decodes a whole PNG to look further)."""
    if image.format == "PNG" and "exif" not in image.info:
        return 1
    value = image.getexif().get(ORIENTATION_TAG, 1)
    return value if isinstance(value, int) else 1


_GreyRule = str  # "16bit": scale 0..65535 down; "unit": floats in [0, 1]; "plain": clip


def _strips(image: Image.Image) -> list[tuple[int, int, int, int]]:
    rows = max(1, _STRIP_PIXELS // image.width)
    return [
        (0, top, image.width, min(top + rows, image.height)) for top in range(0, image.height, rows)
    ]


def _grey_values(image: Image.Image) -> np.ndarray[Any, np.dtype[np.float64]]:
    return np.nan_to_num(np.asarray(image, dtype=np.float64))


def _grey_rule(image: Image.Image) -> _GreyRule:
    """How 16-bit, 32-bit and float grey become 8-bit, decided on the whole image."""
    if image.mode.startswith("I;16"):
        return "16bit"
    low, high = np.inf, -np.inf
    for box in _strips(image):
        values = _grey_values(image.crop(box))
        low, high = min(low, float(values.min())), max(high, float(values.max()))
    if image.mode == "I" and high > 255:
        return "16bit"
    if image.mode == "F" and low >= 0 and high <= 1:
        return "unit"  # floats in [0, 1] are the usual convention
    return "plain"


def _scale_to_l(image: Image.Image, rule: _GreyRule) -> Image.Image:
    """Grey to 8-bit by scaling, where PIL's convert would clip."""
    values = _grey_values(image)
    if rule == "16bit":
        values = values.clip(0, 65535) / 257.0
    elif rule == "unit":
        values = values * 255.0
    return Image.fromarray(np.rint(values).clip(0, 255).astype(np.uint8))


def _on_white(image: Image.Image) -> Image.Image:
    rgba = image.convert("RGBA")
    white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
    return Image.alpha_composite(white, rgba).convert("RGB")


def _converter(image: Image.Image) -> Callable[[Image.Image], Image.Image]:
    """The conversion of one strip of this image to RGB; every step works pixel by pixel."""
    if image.mode.startswith("I") or image.mode == "F":
        rule = _grey_rule(image)
        return lambda piece: _scale_to_l(piece, rule).convert("RGB")
    if image.mode in _ALPHA_MODES or "transparency" in image.info:
        return _on_white
    return lambda piece: piece.convert("RGB")


def to_rgb(image: Image.Image) -> Image.Image:
    """RGB, converted strip by strip: a whole-image conversion of a big 16-bit or alpha
    image made gigabytes of temporaries."""
    if image.mode == "RGB":
        return image
    convert = _converter(image)
    boxes = _strips(image)
    if len(boxes) == 1:
        return convert(image)
    out = Image.new("RGB", image.size)
    for box in boxes:
        out.paste(convert(image.crop(box)), box[:2])
    return out
