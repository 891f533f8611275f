"""Turn each input into what the index needs before embedding: bytes, hash, URI and size.

Reading is cheap next to embedding, so every input is read and hashed first; only inputs
whose content is not stored yet go to the model. The model gets the encoded bytes (or the
pixels) and decodes them in its own worker threads.
"""

from __future__ import annotations

import hashlib
import io
import os
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import numpy as np
from PIL import Image, UnidentifiedImageError

from clip_multimodal import images
from clip_multimodal.errors import ImageLoadError
from clip_multimodal.index._records import Metadata
from clip_multimodal.types import ImageInput

__all__ = ["ImageSource", "read_image_source", "read_many"]

_ROTATED = frozenset({5, 6, 7, 8})  # EXIF orientations that swap width and height
_OCTET = "application/octet-stream"
_READERS = 8  # file and URL reads wait on I/O, not the CPU


@dataclass
class ImageSource:
    """One input, read and hashed as `ImageIndex.add` reads it, pixels not yet decoded.

    For pipelines that embed elsewhere: give `payload` to the model, then store the vector
    with `ImageRecord.from_source(source, vector)` through `ImageIndex.writer()`.

    Attributes:
        desc: a short description of the input, for error messages.
        uri: the absolute path or URL the record keeps; None for bytes and pixels.
        payload: what the model decodes: the encoded bytes, or RGB pixels (a PIL image)
            when the input was already decoded.
        sha256: the content hash (of the bytes, or of the pixels); the default record id.
        mime: the format's MIME type.
        width: the oriented width in pixels (EXIF rotation applied).
        height: the oriented height in pixels.
        size: the input's size in bytes.
        mtime_ns: a file's modification time in nanoseconds; None for other inputs.
    """

    desc: str
    uri: str | None
    payload: ImageInput
    sha256: str
    mime: str
    width: int
    height: int
    size: int
    mtime_ns: int | None

    def metadata(self) -> Metadata:
        """The index's own metadata keys for this image."""
        meta: Metadata = {
            "mime": self.mime,
            "width": self.width,
            "height": self.height,
            "size": self.size,
            "sha256": self.sha256,
            "modality": "image",
        }
        if self.uri is not None:
            meta["uri"] = self.uri
        if self.mtime_ns is not None:
            # mtime_ns is what sync compares: floats do not survive every Chroma round trip.
            meta["mtime"] = self.mtime_ns / 1e9
            meta["mtime_ns"] = self.mtime_ns
        return meta


def read_many(sources: Sequence[ImageInput]) -> list[ImageSource | ImageLoadError]:
    """Read every input; a failure is returned in its place, not raised.

    URLs are fetched on threads (they wait on the network). Local files are read in turn:
    on a small machine, threads made reading 1,000 small files four times slower.
    """
    out: list[ImageSource | ImageLoadError | None] = [None] * len(sources)
    urls = [i for i, s in enumerate(sources) if _is_url(s)]
    if len(urls) > 1:
        with ThreadPoolExecutor(min(_READERS, len(urls))) as pool:
            results = pool.map(_read_or_error, [sources[i] for i in urls])
            for i, result in zip(urls, results, strict=True):
                out[i] = result
    for i, source in enumerate(sources):
        if out[i] is None:
            out[i] = _read_or_error(source)
    return [r for r in out if r is not None]


def _is_url(source: ImageInput) -> bool:
    return isinstance(source, str) and urlsplit(source).scheme.lower() in ("http", "https")


def _read_or_error(source: ImageInput) -> ImageSource | ImageLoadError:
    try:
        return read_image_source(source)
    except ImageLoadError as exc:
        return exc


def read_image_source(source: ImageInput) -> ImageSource:
    """Read, hash and probe one input without decoding its pixels, as `ImageIndex.add` does.

    Args:
        source: any `ImageInput` (a path, URL, bytes, base64, PIL image or array).

    Returns:
        The ImageSource: the model's payload and the metadata a record stores.

    Raises:
        ImageLoadError: the input cannot be read, or its header is not an image.
    """
    desc = images.describe_source(source)
    if isinstance(source, (Image.Image, np.ndarray)):
        return _from_pixels(source)
    uri, mtime_ns = _locate(source)
    data = images.read_bytes(source)
    mime, width, height = _probe(data, desc)
    digest = hashlib.sha256(data).hexdigest()
    return ImageSource(desc, uri, data, digest, mime, width, height, len(data), mtime_ns)


def _locate(source: ImageInput) -> tuple[str | None, int | None]:
    """The absolute path (or the URL) a record keeps, and a file's mtime in nanoseconds."""
    if isinstance(source, str) and images.is_image_reference(source):
        if source[:5].lower() == "data:":
            return None, None
        if _is_url(source):
            return source, None
    elif not isinstance(source, os.PathLike):
        return None, None  # bytes, base64, or a path that does not exist (read_bytes says so)
    path = Path(os.fsdecode(source)).expanduser().absolute()
    try:
        return str(path), path.stat().st_mtime_ns
    except OSError:
        return str(path), None


def _from_pixels(source: Image.Image | np.ndarray[Any, Any]) -> ImageSource:
    # Already decoded: the core loader normalizes to RGB and hashes the pixels.
    rgb, info = images.load_image_with_info(source)
    desc = images.describe_source(source)
    return ImageSource(
        desc, None, rgb, info.sha256, info.mime, info.width, info.height, info.size, None
    )


def _probe(data: bytes, desc: str) -> tuple[str, int, int]:
    """Format and oriented size from the header alone (the model decodes the pixels later)."""
    if not data:
        raise ImageLoadError(desc, "empty input (0 bytes)")
    try:
        image = Image.open(io.BytesIO(data))
        width, height = image.size
        if image.getexif().get(0x0112, 1) in _ROTATED:
            width, height = height, width
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise ImageLoadError(desc, f"too large, possible decompression bomb ({exc})") from exc
    except UnidentifiedImageError as exc:  # its message shows our buffer's repr, not the input
        raise ImageLoadError(desc, "not an image PIL can decode") from exc
    except Exception as exc:  # PIL raises many types for bad headers; all mean "not an image"
        raise ImageLoadError(desc, f"not an image PIL can decode ({exc})") from exc
    return Image.MIME.get(image.format or "", _OCTET), width, height
