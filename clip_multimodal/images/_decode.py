"""Decoding encoded bytes (or a caller's pixels) into a fully decoded RGB PIL image, safely.

EXIF orientation is applied, every mode becomes RGB (transparency on white), animations give
their first frame, and decompression bombs and images over the decode budget are refused
from the header. Every failure is an `ImageLoadError` that names the input.
"""

from __future__ import annotations

import base64
import io
from typing import Any, NamedTuple

import numpy as np
from PIL import Image, ImageOps

from clip_multimodal._pixels import ROTATED_ORIENTATIONS, orientation, to_rgb
from clip_multimodal.errors import ImageLoadError
from clip_multimodal.images._access import AccessPolicy
from clip_multimodal.images._header import (
    RAW_MIME,
    check_budget,
    open_checked,
    pil_bomb_guard,
    pil_errors,
)
from clip_multimodal.images._kinds import SourceKind, classify
from clip_multimodal.images._limits import (
    DEFAULT_MAX_BYTES,
    DEFAULT_MAX_DECODE_BYTES,
    DEFAULT_MAX_PIXELS,
)
from clip_multimodal.images._read import EncodedImage, read_classified
from clip_multimodal.types import ImageInput

__all__ = [
    "Decoded",
    "checked_kind",
    "decode_source",
    "load_image",
    "to_base64",
    "to_data_uri",
]


class Decoded(NamedTuple):
    """An input decoded: the RGB image, the bytes it came from (None for pixels), the
    format PIL read and the original size (after EXIF orientation, before any draft)."""

    image: Image.Image
    encoded: EncodedImage | None
    format: str | None
    size: tuple[int, int]


def _check_draft(draft: tuple[int, int]) -> None:
    if draft[0] <= 0 or draft[1] <= 0:
        raise ValueError(f"draft must be a positive (width, height), got {draft}")


def _apply_draft(image: Image.Image, draft: tuple[int, int]) -> None:
    if image.format != "JPEG":
        return
    # draft works on the stored pixels: ask for the stored shape of the displayed size.
    rotated = orientation(image) in ROTATED_ORIENTATIONS
    image.draft(None, (draft[1], draft[0]) if rotated else draft)


def _finish(image: Image.Image, desc: str) -> Image.Image:
    """A caller's image: apply EXIF orientation and convert to RGB, in a copy."""
    with pil_errors(desc, "truncated or corrupt image data"):
        image.load()
        return to_rgb(ImageOps.exif_transpose(image))  # a copy: never the caller's object


def _finish_decoded(image: Image.Image) -> Image.Image:
    """An image we decoded ourselves: orient and convert it in place where we can."""
    image.load()
    ImageOps.exif_transpose(image, in_place=True)
    rgb = to_rgb(image)
    # A plain Image sharing the pixels: drops the file object and any decoder buffers.
    return rgb._new(rgb.im) if rgb is image else rgb


def _decode_opened(
    image: Image.Image,
    desc: str,
    draft: tuple[int, int] | None,
    max_decode_bytes: int | None,
) -> tuple[Image.Image, str | None, tuple[int, int]]:
    stored = image.size
    if draft is not None:
        _apply_draft(image, draft)
    check_budget(image, max_decode_bytes, desc)
    with pil_errors(desc, "truncated or corrupt image data"):
        image.load()
        loaded = image.size
        rgb = _finish_decoded(image)  # an animation stays on frame 0, where open left it
    rotated = rgb.size != loaded
    return rgb, image.format, (stored[1], stored[0]) if rotated else stored


def _decode(
    data: bytes,
    desc: str,
    max_pixels: int | None,
    draft: tuple[int, int] | None,
    max_decode_bytes: int | None,
) -> tuple[Image.Image, str | None, tuple[int, int]]:
    """Decode to RGB; also return the format and the original (oriented) size."""
    if draft is not None:
        _check_draft(draft)
    with pil_errors(desc, "cannot decode"):
        with pil_bomb_guard(max_pixels) as lifted:
            image = open_checked(data, desc, max_pixels)
            if lifted:  # PIL's limit also applies while loading: keep it lifted (rare, big)
                return _decode_opened(image, desc, draft, max_decode_bytes)
        # Only the fast header parse was serialized.
        return _decode_opened(image, desc, draft, max_decode_bytes)


def _from_array(array: np.ndarray[Any, Any], desc: str) -> Image.Image:
    shape_ok = array.ndim == 2 or (array.ndim == 3 and array.shape[2] in (1, 3, 4))
    if array.dtype != np.uint8 or not shape_ok or array.size == 0:
        raise ImageLoadError(
            desc,
            "expected a uint8 array of shape (H, W), (H, W, 1), (H, W, 3) or (H, W, 4); "
            "convert floats in [0, 1] with (a * 255).round().astype(np.uint8)",
        )
    return Image.fromarray(array[:, :, 0] if array.ndim == 3 and array.shape[2] == 1 else array)


def _from_pixels(source: Image.Image | np.ndarray[Any, Any], desc: str) -> Image.Image:
    image = source if isinstance(source, Image.Image) else _from_array(source, desc)
    return _finish(image, desc)


def checked_kind(source: ImageInput, policy: AccessPolicy | None) -> SourceKind:
    """Classify an input, and check it against the policy if there is one."""
    kind = classify(source)
    if policy is not None:
        policy.check(source, kind)
    return kind


def decode_source(
    source: ImageInput,
    kind: SourceKind,
    max_pixels: int | None = DEFAULT_MAX_PIXELS,
    max_bytes: int = DEFAULT_MAX_BYTES,
    timeout: float = 10.0,
    draft: tuple[int, int] | None = None,
    max_decode_bytes: int | None = DEFAULT_MAX_DECODE_BYTES,
) -> Decoded:
    """Read and decode an input that `classify` gave `kind` (see `load_image`)."""
    if isinstance(source, (Image.Image, np.ndarray)):
        rgb = _from_pixels(source, kind.desc)
        fmt = source.format if isinstance(source, Image.Image) else None
        return Decoded(rgb, None, fmt, rgb.size)
    encoded = read_classified(source, kind, max_bytes, timeout)
    rgb, fmt, size = _decode(encoded.data, kind.desc, max_pixels, draft, max_decode_bytes)
    return Decoded(rgb, encoded, fmt, size)


def load_image(
    source: ImageInput,
    *,
    max_pixels: int | None = DEFAULT_MAX_PIXELS,
    max_bytes: int = DEFAULT_MAX_BYTES,
    timeout: float = 10.0,
    draft: tuple[int, int] | None = None,
    max_decode_bytes: int | None = DEFAULT_MAX_DECODE_BYTES,
    policy: AccessPolicy | None = None,
) -> Image.Image:
    """Load any image input as a fully decoded RGB PIL image.

    Args:
        source: a path (str or Path), an http(s) URL, raw bytes, a binary file object (a
            BytesIO gives its whole buffer, any other is read from its position), a base64
            string or data: URI, a PIL image, or a uint8 numpy array (H, W), (H, W, 1),
            (H, W, 3) or (H, W, 4).
        max_pixels: refuse encoded images with more pixels (decompression bombs); None: no cap.
        max_bytes: refuse files, file objects, URL bodies, bytes and base64 payloads longer
            than this.
        timeout: seconds allowed for a URL fetch.
        draft: opt-in fast JPEG decode at a reduced scale of at least this (width, height).
            It changes pixels, so it is off by default.
        max_decode_bytes: refuse, from the header, images whose decoding would need more
            memory than this (see `decode_cost`); None: no budget. A small file can decode
            to gigabytes (a 3 KB WebP to 9400x9400 pixels).
        policy: where paths and URLs may reach (`AccessPolicy`); None: anywhere. Give one
            when the source comes from someone else (a request, an agent's tool call).

    Returns:
        An RGB image with EXIF orientation applied, transparency composited on white and,
        for animations, the first frame (a PIL image you pass is used at its current frame).

    Raises:
        ImageLoadError: naming the source and the reason.
    """
    kind = checked_kind(source, policy)
    return decode_source(
        source, kind, max_pixels, max_bytes, timeout, draft, max_decode_bytes
    ).image


def to_base64(
    source: ImageInput, *, max_side: int | None = 512, format: str = "JPEG", quality: int = 90
) -> str:
    """Re-encode an image as base64 for vision chat models, shrunk to fit max_side (aspect kept)."""
    image = load_image(source)
    if max_side is not None and max(image.size) > max_side:
        image.thumbnail((max_side, max_side), Image.Resampling.BICUBIC)
    buffer = io.BytesIO()
    image.save(buffer, format=_pil_format(format), quality=quality)
    return base64.b64encode(buffer.getvalue()).decode("ascii")


def to_data_uri(
    source: ImageInput, *, max_side: int | None = 512, format: str = "JPEG", quality: int = 90
) -> str:
    """Like `to_base64`, as a "data:image/jpeg;base64,..." URI."""
    payload = to_base64(source, max_side=max_side, format=format, quality=quality)
    return f"data:{Image.MIME.get(_pil_format(format), RAW_MIME)};base64,{payload}"


def _pil_format(name: str) -> str:
    upper = name.upper()
    return "JPEG" if upper == "JPG" else upper
