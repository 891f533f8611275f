"""The typed source: an input classified, read, hashed and probed once.

`read_image_source` is what the index and the device pipeline read inputs with: the
encoded bytes (not decoded), their hash, location, size, modification time and header facts.
`load_image_with_info` gives the same facts for an input it decodes.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from PIL import Image

from clip_multimodal.images._access import AccessPolicy
from clip_multimodal.images._decode import Decoded, checked_kind, decode_source
from clip_multimodal.images._header import RAW_MIME, PlainFormat, plain_format, read_header
from clip_multimodal.images._kinds import SourceKind, classify
from clip_multimodal.images._limits import (
    DEFAULT_MAX_BYTES,
    DEFAULT_MAX_DECODE_BYTES,
    DEFAULT_MAX_PIXELS,
)
from clip_multimodal.images._read import EncodedImage, read_classified
from clip_multimodal.types import ImageInput

__all__ = ["ImageInfo", "ImageSource", "load_image_with_info", "read_image_source"]


@dataclass
class ImageSource:
    """One input, read and hashed, with what its header says; pixels not yet decoded.

    For pipelines that embed elsewhere: give `payload` to the model, then store the vector
    with `ImageRecord.from_source(source, vector)` through `ImageIndex.writer()`.

    Attributes:
        desc: a short description of the input, for error messages.
        uri: the absolute path (~ expanded) or URL; None for bytes, file objects, base64
            and pixels.
        payload: what the model decodes: the encoded bytes, or RGB pixels (a PIL image)
            when the input was already decoded.
        sha256: the content hash (of the bytes, or of the pixels); the default record id.
        mime: the format's MIME type ("application/octet-stream" for arrays).
        width: the oriented width in pixels (EXIF rotation applied, before any draft).
        height: the oriented height in pixels.
        size: the input's size in bytes (of the RGB pixel buffer for PIL images and arrays).
        mtime_ns: a file's modification time in nanoseconds; None for other inputs.
        mtime: the same in seconds, as the file's stat gave it.
        plain: "jpeg" or "png" where a fast decoder reproduces `load_image` exactly.
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
    mtime: float | None = None
    plain: PlainFormat | None = None

    def metadata(self) -> dict[str, str | int | float | bool]:
        """The index's own metadata keys for this image."""
        meta: dict[str, str | int | float | bool] = {
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


#: What `load_image_with_info` reports: the same facts as the index's sources.
ImageInfo = ImageSource


def read_image_source(
    source: ImageInput,
    *,
    kind: SourceKind | None = None,
    max_bytes: int = DEFAULT_MAX_BYTES,
    timeout: float = 10.0,
) -> ImageSource:
    """Read, hash and probe one input without decoding its pixels, as `ImageIndex.add` does.

    Args:
        source: any `ImageInput` (a path, URL, bytes, file object, base64, PIL image, array).
        kind: its `classify` result, if the caller has it already (a file is then not
            stat'ed again).
        max_bytes: as for `load_image`.
        timeout: as for `load_image`.

    Returns:
        The ImageSource: the model's payload and the metadata a record stores.

    Raises:
        ImageLoadError: the input cannot be read, or its header is not an image.
    """
    kind = kind or classify(source)
    if kind.kind == "pixels":  # already decoded: normalize to RGB and hash the pixels
        return _from_decoded(kind.desc, decode_source(source, kind))
    encoded = read_classified(source, kind, max_bytes, timeout)
    header = read_header(encoded.data, desc=kind.desc)
    return _from_encoded(
        kind.desc, encoded, header.mime, (header.width, header.height), header.plain
    )


def _from_decoded(desc: str, decoded: Decoded) -> ImageSource:
    rgb, encoded = decoded.image, decoded.encoded
    mime = Image.MIME.get(decoded.format or "", RAW_MIME)
    width, height = decoded.size
    if encoded is None:  # pixels: hash them with their shape
        pixels = rgb.tobytes()
        digest = hashlib.sha256(f"{rgb.width}x{rgb.height}:".encode() + pixels).hexdigest()
        return ImageSource(desc, None, rgb, digest, mime, width, height, len(pixels), None)
    return _from_encoded(desc, encoded, mime, decoded.size, plain_format(encoded.data))


def _from_encoded(
    desc: str,
    encoded: EncodedImage,
    mime: str,
    size: tuple[int, int],
    plain: PlainFormat | None,
) -> ImageSource:
    data = encoded.data
    digest = hashlib.sha256(data).hexdigest()
    width, height = size
    uri, mtime_ns, mtime = encoded.uri, encoded.mtime_ns, encoded.mtime
    return ImageSource(
        desc, uri, data, digest, mime, width, height, len(data), mtime_ns, mtime, plain
    )


def load_image_with_info(
    source: ImageInput,
    *,
    max_pixels: int | None = DEFAULT_MAX_PIXELS,
    max_bytes: int = DEFAULT_MAX_BYTES,
    timeout: float = 10.0,
    draft: tuple[int, int] | None = None,
    max_decode_bytes: int | None = DEFAULT_MAX_DECODE_BYTES,
    policy: AccessPolicy | None = None,
) -> tuple[Image.Image, ImageInfo]:
    """Like `load_image`, and also return the source's `ImageInfo` (hash, format, size)."""
    kind = checked_kind(source, policy)
    decoded = decode_source(source, kind, max_pixels, max_bytes, timeout, draft, max_decode_bytes)
    return decoded.image, _from_decoded(kind.desc, decoded)
