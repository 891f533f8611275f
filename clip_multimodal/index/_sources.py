"""Turn each input into what the index needs before embedding: bytes, hash, URI and size.

Reading is cheap next to embedding, so every input is read and hashed first; only inputs
whose content is not stored yet go to the model. The model gets the encoded bytes (or the
pixels) and decodes them in its own worker threads.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import numpy as np
from PIL import Image

from clip_multimodal import images
from clip_multimodal.errors import ImageLoadError
from clip_multimodal.index._records import Metadata
from clip_multimodal.types import ImageInput

__all__ = ["ImageSource", "read_image_source", "read_many"]

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
    if not isinstance(source, str):
        return False
    try:
        return urlsplit(source).scheme.lower() in ("http", "https")
    except ValueError:  # malformed (an unclosed [IPv6]): read alone, the loader names it
        return False


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
    encoded = images.read_encoded(source)  # files through the loader's one guarded open
    mime, width, height, _ = images.read_header(encoded.data, desc=desc)
    data = encoded.data
    digest = hashlib.sha256(data).hexdigest()
    uri = _record_uri(encoded)
    return ImageSource(desc, uri, data, digest, mime, width, height, len(data), encoded.mtime_ns)


def _record_uri(encoded: images.EncodedImage) -> str | None:
    """The absolute path (or the URL) a record keeps; None for bytes, base64 and data: URIs."""
    if encoded.uri is None or encoded.mtime_ns is None:  # a URL, or no location at all
        return encoded.uri
    return str(Path(encoded.uri).absolute())


def _from_pixels(source: Image.Image | np.ndarray[Any, Any]) -> ImageSource:
    # Already decoded: the core loader normalizes to RGB and hashes the pixels.
    rgb, info = images.load_image_with_info(source)
    desc = images.describe_source(source)
    return ImageSource(
        desc, None, rgb, info.sha256, info.mime, info.width, info.height, info.size, None
    )
