"""An input's encoded bytes, by its kind: a file, a file object, a URL, base64 or a data: URI.

`read_classified` is the one dispatcher: every reader of encoded bytes (the loader, the
index's sources, the device pipeline) comes through it with the input's `SourceKind`.
"""

from __future__ import annotations

import base64
import binascii
from typing import Any, NamedTuple

from clip_multimodal.errors import ImageLoadError
from clip_multimodal.images._fetch import fetch_url
from clip_multimodal.images._files import read_file, read_file_object
from clip_multimodal.images._kinds import SourceKind, classify
from clip_multimodal.images._limits import DEFAULT_MAX_BYTES, too_many_bytes
from clip_multimodal.types import ImageInput

__all__ = ["EncodedImage", "decode_base64", "read_bytes", "read_classified", "read_encoded"]


class EncodedImage(NamedTuple):
    """An input's encoded bytes, as `read_encoded` read them.

    Attributes:
        data: the encoded bytes.
        uri: the file's absolute path (~ expanded) or the URL; None for bytes and base64.
        mtime: a file's modification time, from the descriptor that was read.
        mtime_ns: the same in nanoseconds.
    """

    data: bytes
    uri: str | None
    mtime: float | None = None
    mtime_ns: int | None = None


def decode_base64(text: str, *, max_bytes: int = DEFAULT_MAX_BYTES, desc: str = "") -> bytes:
    """The bytes of a base64 string (wrapped, URL-safe or unpadded) or base64 data: URI.

    Args:
        text: the base64 text, or "data:<mime>;base64,<payload>".
        max_bytes: refuse payloads that decode to more than this, before decoding.
        desc: how errors name the input (default: its `describe_source` form).

    Raises:
        ImageLoadError: not base64, a data: URI that is not base64, or over max_bytes.
    """
    desc = desc or classify(text).desc
    payload = text.strip()
    if payload[:5].lower() == "data:":
        header, sep, payload = payload.partition(",")
        if not sep:
            raise ImageLoadError(desc, "malformed data: URI (no comma before the payload)")
        if not header.lower().endswith(";base64"):
            raise ImageLoadError(
                desc, "only base64 data: URIs are supported (data:image/...;base64,...)"
            )
    compact = "".join(payload.split()).translate(str.maketrans("-_", "+/"))
    if len(compact) * 3 // 4 > max_bytes:
        raise too_many_bytes(desc, len(compact) * 3 // 4, max_bytes)
    try:  # tolerate missing padding, which many encoders drop
        return base64.b64decode(compact + "=" * (-len(compact) % 4), validate=True)
    except (binascii.Error, ValueError) as exc:
        raise ImageLoadError(desc, f"invalid base64 ({exc})") from exc


def read_classified(
    source: Any, kind: SourceKind, max_bytes: int = DEFAULT_MAX_BYTES, timeout: float = 10.0
) -> EncodedImage:
    """The encoded bytes of an input that `classify` gave `kind`.

    Raises:
        ImageLoadError: the source cannot be read, or is a PIL image or array (no encoding).
    """
    desc = kind.desc
    if kind.kind == "bytes":
        if len(source) > max_bytes:
            raise too_many_bytes(desc, len(source), max_bytes)
        return EncodedImage(bytes(source), None)
    if kind.kind == "path":
        data, path, info = read_file(source, desc, max_bytes, kind.stat)
        return EncodedImage(data, str(path.absolute()), info.st_mtime, info.st_mtime_ns)
    if kind.kind == "file":
        return EncodedImage(read_file_object(source, desc, max_bytes), None)
    if kind.kind == "url":
        return EncodedImage(fetch_url(source, max_bytes=max_bytes, timeout=timeout), source)
    if kind.kind in ("data", "base64"):
        return EncodedImage(decode_base64(source, max_bytes=max_bytes, desc=desc), None)
    if kind.kind == "document":
        return _read_document(str(source), kind, max_bytes)
    raise ImageLoadError(desc, _unreadable(source, kind))


def _read_document(uri: str, kind: SourceKind, max_bytes: int) -> EncodedImage:
    """One image of a document, extracted (or its page rendered) again from the file."""
    from clip_multimodal.documents import read_document_image

    data = read_document_image(uri)
    if len(data) > max_bytes:
        raise too_many_bytes(kind.desc, len(data), max_bytes)
    info = kind.stat
    return EncodedImage(data, uri, info and info.st_mtime, info and info.st_mtime_ns)


def _unreadable(source: Any, kind: SourceKind) -> str:
    if kind.kind == "pixels":
        return "is already decoded: it has no encoded bytes to read"
    if kind.kind == "scheme":
        scheme = str(source).split(":", 1)[0]
        return f"unsupported scheme {scheme!r}; pass an http(s) URL or a path"
    return (
        "unsupported input type; pass a path, URL, bytes, base64 string, binary file object, "
        "PIL image or uint8 array"
    )


def read_bytes(
    source: ImageInput, *, max_bytes: int = DEFAULT_MAX_BYTES, timeout: float = 10.0
) -> bytes:
    """The raw encoded bytes of a path, URL, bytes, file object, base64 or data: URI source.

    Raises:
        ImageLoadError: the source cannot be read, or is a PIL image or array (no encoding).
    """
    return read_classified(source, classify(source), max_bytes, timeout).data


def read_encoded(
    source: ImageInput, *, max_bytes: int = DEFAULT_MAX_BYTES, timeout: float = 10.0
) -> EncodedImage:
    """Like `read_bytes`, with the file's path and modification time (from the same open).

    Raises:
        ImageLoadError: the source cannot be read, or is a PIL image or array (no encoding).
    """
    return read_classified(source, classify(source), max_bytes, timeout)
