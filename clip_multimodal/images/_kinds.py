"""What an image input is: the one classification of every input kind, and its description.

Every reader asks `classify` once and carries the answer on: the kind, the short printable
name that messages use, and, for a file, the stat that decided it. A new input kind (a page
of a document, say) is one more branch here and one more reader in `_read.py`.
"""

from __future__ import annotations

import io
import os
import re
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import Literal
from urllib.parse import urlsplit, urlunsplit

import numpy as np
from PIL import Image

__all__ = [
    "IMAGE_EXTENSIONS",
    "IMAGE_PATTERNS",
    "SourceKind",
    "classify",
    "describe_source",
    "is_image_query",
    "is_image_reference",
]

#: The file name endings read as images: by the query rule (`is_image_query`), by folder
#: sync (`IMAGE_PATTERNS`) and by the LlamaIndex readers.
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".webp", ".gif", ".bmp", ".tif", ".tiff")
#: `IMAGE_EXTENSIONS` as glob patterns, the files `index_folder` picks by default.
IMAGE_PATTERNS = tuple(f"*{ext}" for ext in IMAGE_EXTENSIONS)

Kind = Literal[
    "path", "url", "scheme", "data", "base64", "bytes", "file", "pixels", "document", "other"
]

_SCHEME = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*)://")
# Base64 (wrapped lines, never spaces) is checked by a scan for a foreign character: the
# regex ^[A-Za-z0-9+/\r\n]+={0,2}\s*$ backtracked quadratically on runs of newlines.
_NOT_BASE64 = re.compile(r"[^A-Za-z0-9+/\r\n]")
# Where a path starts: / \ ./ ../ .\ ..\ a drive (C:\ or C:/), ~ or ~user then a separator.
_PATH_START = re.compile(r"[/\\]|\.{1,2}[/\\]|[A-Za-z]:[/\\]|~[^\s/\\]*(?:[/\\]|$)")
_SPACE = re.compile(r"\s")
_MIN_BASE64_CHARS = 32  # shorter strings cannot hold a real image; treat them as paths


@dataclass(frozen=True)
class SourceKind:
    """An input as `classify` read it.

    Attributes:
        kind: "path", "url" (http(s)), "scheme" (another, refused), "data" (a data: URI),
            "base64", "bytes", "file" (a binary file object such as BytesIO), "pixels" (a
            PIL image or array), "document" (one image inside a PDF or PPTX file,
            `/docs/report.pdf#page=7&image=0`, or a rendered page, `...#page=7`) or
            "other" (unsupported).
        desc: the short printable form that error messages name the input by.
        stat: for a path that names a regular file, the stat that said so; the reader opens
            the file without a second stat.
    """

    kind: Kind
    desc: str
    stat: os.stat_result | None = None


def classify(source: object) -> SourceKind:
    """The kind and description of any image input; stats a path once, reads nothing."""
    if isinstance(source, (bytes, bytearray, memoryview)):
        return SourceKind("bytes", f"<bytes: {len(source)} B>")
    if isinstance(source, os.PathLike):
        text = os.fsdecode(source)
        return SourceKind("path", _short(text), _file_stat(text))
    if isinstance(source, (Image.Image, np.ndarray)):
        return SourceKind("pixels", _describe_pixels(source))
    if isinstance(source, io.IOBase) or callable(getattr(source, "read", None)):
        return SourceKind("file", _describe_file_object(source))
    if isinstance(source, str):
        return _classify_text(source)
    return SourceKind("other", f"<{type(source).__name__}>")


def scanned_file(path: str, found: os.stat_result) -> SourceKind:
    """What `classify(path)` gives for a file a directory walk has just stat'ed (`found`),
    without a second stat; the reader still checks what it opens."""
    return SourceKind("path", _short(path), found if stat.S_ISREG(found.st_mode) else None)


def _classify_text(text: str) -> SourceKind:
    if text[:5].lower() == "data:":
        return SourceKind("data", f"<data URI: {len(text)} chars>")
    match = _SCHEME.match(text)
    if match:
        if match.group(1).lower() in ("http", "https"):
            return SourceKind("url", _short(_redact_url(text)))
        return SourceKind("scheme", _short(text))
    found = _file_stat(text)
    if found is None and "#page=" in text:
        document = _document_stat(text)
        if document is not None:
            return SourceKind("document", _short(text), document)
    if found is None and len(text) >= _MIN_BASE64_CHARS and _is_base64(text):
        return SourceKind("base64", f"<base64: {len(text)} chars>")
    return SourceKind("path", _short(text), found)


def _classify(text: str) -> str:
    """One of "data", "url", "scheme" (unsupported), "path" or "base64"."""
    return _classify_text(text).kind


def describe_source(source: object) -> str:
    """The short printable form of an image input used in error messages."""
    return classify(source).desc


def _is_base64(text: str) -> bool:
    """Base64 characters and line breaks, up to two '=' of padding, trailing whitespace."""
    stripped = text.rstrip()
    body = stripped.rstrip("=")
    return bool(body) and len(stripped) - len(body) <= 2 and not _NOT_BASE64.search(body)


def _file_stat(text: str) -> os.stat_result | None:
    """The stat of the regular file `text` names (links followed); None for anything else."""
    if len(text) > 4096 or "\n" in text:  # cannot be a path; skip the stat
        return None
    try:
        found = os.stat(Path(text).expanduser())
    except (OSError, ValueError, RuntimeError):  # RuntimeError: ~name of no such user
        return None
    return found if stat.S_ISREG(found.st_mode) else None


def _document_stat(text: str) -> os.stat_result | None:
    """The stat of the document a document image URI (`path.pdf#page=N...`) names."""
    from clip_multimodal.documents import document_fragment

    found = document_fragment(text)
    return _file_stat(found.path) if found is not None else None


def _is_file(text: str) -> bool:
    return _file_stat(text) is not None


def _short(text: str, limit: int = 160) -> str:
    text = text if text.isprintable() else ascii(text)
    return text if len(text) <= limit else f"{text[: limit - 40]}...{text[-37:]}"


def _redact_url(url: str) -> str:
    try:
        parts = urlsplit(url)
    except ValueError:  # malformed (e.g. an unclosed [IPv6]): drop anything before an @
        return re.sub(r"^([^:/]*://)[^/]*@", r"\1", url)
    if parts.username is None and parts.password is None:
        return url
    host = parts.hostname or ""
    netloc = f"{host}:{parts.port}" if parts.port else host
    return urlunsplit(parts._replace(netloc=netloc))  # never print credentials


def _describe_pixels(source: Image.Image | np.ndarray) -> str:
    if isinstance(source, Image.Image):
        return f"<PIL.Image {source.mode} {source.width}x{source.height}>"
    return f"<ndarray {source.shape} {source.dtype}>"


def _describe_file_object(source: object) -> str:
    kind = type(source).__name__
    if getattr(source, "closed", False) is True:
        return f"<{kind}: closed>"
    if isinstance(source, io.BytesIO):
        with source.getbuffer() as view:  # released at once: a held view blocks writes
            return f"<{kind}: {view.nbytes} B>"
    name = getattr(source, "name", None)
    return (
        f"<{kind}: {_short(os.fsdecode(name))}>" if isinstance(name, (str, bytes)) else f"<{kind}>"
    )


def is_image_reference(text: str) -> bool:
    """True for an existing file path, an http(s) URL, a data: URI or an image in a document."""
    return _classify(text) in ("url", "data", "document") or _is_file(text)


def _looks_like_path(text: str) -> bool:
    return bool(
        _PATH_START.match(text)
        or text[-6:].lower().endswith(IMAGE_EXTENSIONS)
        or (("/" in text or "\\" in text) and not _SPACE.search(text))
    )


def is_image_query(text: str) -> bool:
    """The query rule: whether a str query (query_type="auto") is an image, never text.

    It is an image when it looks like a path or URL, so that a mistyped path raises
    `ImageLoadError` instead of silently searching for its words. That is, when it

    1. starts with `data:` or a URL scheme (`SCHEME://`; only http(s) loads),
    2. starts with `/`, `\\`, `./`, `../`, a drive (`C:\\`), `~/` or `~user/` (or is `~user`),
    3. ends with an image extension (`IMAGE_EXTENSIONS`, any case),
    4. is one word (no whitespace) holding a `/` or `\\`, or
    5. names an existing file.

    Anything else is text: "a black/white cat" is text, "photos/cat" is an image path.
    Linear in the length of `text`, and never raises.
    """
    if text[:5].lower() == "data:" or _SCHEME.match(text):
        return True
    return _looks_like_path(text) or _is_file(text)
