"""Load every image a user has into a fully decoded RGB PIL image, safely.

`load_image` accepts paths, http(s) URLs, bytes, base64 strings, data: URIs, PIL images and
uint8 arrays. It applies EXIF orientation, turns every mode into RGB (transparency on white),
takes the first frame of animations and refuses decompression bombs. Every failure is an
`ImageLoadError` that names the input. URLs are fetched with the stdlib only.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import http.client
import io
import os
import re
import stat
import threading
import time
import urllib.error
import urllib.request
import warnings
from collections.abc import Collection, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple
from urllib.parse import urlsplit, urlunsplit

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from clip_multimodal._pixels import ROTATED_ORIENTATIONS, decode_cost, orientation, to_rgb
from clip_multimodal.access import AccessPolicy, parse_url
from clip_multimodal.errors import ImageLoadError
from clip_multimodal.types import ImageInput

__all__ = [
    "DEFAULT_MAX_BYTES",
    "DEFAULT_MAX_DECODE_BYTES",
    "DEFAULT_MAX_PIXELS",
    "IMAGE_EXTENSIONS",
    "EncodedImage",
    "ImageHeader",
    "ImageInfo",
    "ImageInput",
    "decode_cost",
    "describe_source",
    "fetch_url",
    "file_fingerprint",
    "is_image_query",
    "is_image_reference",
    "load_image",
    "load_image_with_info",
    "read_bytes",
    "read_encoded",
    "read_header",
    "sha256_file",
    "to_base64",
    "to_data_uri",
]

DEFAULT_MAX_PIXELS: int = 89_478_485  # PIL's own default limit
DEFAULT_MAX_BYTES: int = 50 * 2**20
DEFAULT_MAX_DECODE_BYTES: int = 512 * 2**20  # fits an 8-bit RGB image at DEFAULT_MAX_PIXELS

#: The file name endings the query rule reads as an image (`is_image_query`).
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".webp", ".gif", ".bmp", ".tif", ".tiff")

_SCHEME = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*)://")
# Base64 (wrapped lines, never spaces) is checked by a scan for a foreign character: the
# regex ^[A-Za-z0-9+/\r\n]+={0,2}\s*$ backtracked quadratically on runs of newlines.
_NOT_BASE64 = re.compile(r"[^A-Za-z0-9+/\r\n]")
# Where a path starts: / \ ./ ../ .\ ..\ a drive (C:\ or C:/), ~ or ~user then a separator.
_PATH_START = re.compile(r"[/\\]|\.{1,2}[/\\]|[A-Za-z]:[/\\]|~[^\s/\\]*(?:[/\\]|$)")
_SPACE = re.compile(r"\s")
_MIN_BASE64_CHARS = 32  # shorter strings cannot hold a real image; treat them as paths
_RAW_MIME = "application/octet-stream"  # PIL images and arrays have no encoded format
_CHUNK = 64 * 1024
# PIL's bomb limit and the warnings filters are process globals: one lock keeps our own
# threads from interleaving their temporary changes to them.
_PIL_GLOBALS = threading.Lock()


@dataclass(frozen=True)
class ImageInfo:
    """What the index records about a source image.

    Attributes:
        uri: the path or URL as given; None for bytes, base64, PIL images and arrays.
        sha256: hex digest of the encoded bytes (of the RGB pixels for PIL images and arrays).
        mime: the decoded format's MIME type, e.g. "image/jpeg".
        width: original width after EXIF orientation (before any `draft` reduction).
        height: original height after EXIF orientation.
        size: length of the encoded bytes (of the RGB pixel buffer for PIL images and arrays).
        mtime: the file's modification time; None for anything but files.
    """

    uri: str | None
    sha256: str
    mime: str
    width: int
    height: int
    size: int
    mtime: float | None


class EncodedImage(NamedTuple):
    """An input's encoded bytes, as `read_encoded` read them.

    Attributes:
        data: the encoded bytes.
        uri: the file's path (with ~ expanded) or the URL; None for bytes and base64.
        mtime: a file's modification time, from the descriptor that was read.
        mtime_ns: the same in nanoseconds.
    """

    data: bytes
    uri: str | None
    mtime: float | None = None
    mtime_ns: int | None = None


# --- describing and classifying sources -------------------------------------------------


def _classify(text: str) -> str:
    """One of "data", "url", "scheme" (unsupported), "path" or "base64"."""
    if text[:5].lower() == "data:":
        return "data"
    match = _SCHEME.match(text)
    if match:
        return "url" if match.group(1).lower() in ("http", "https") else "scheme"
    if _is_file(text):
        return "path"
    if len(text) >= _MIN_BASE64_CHARS and _is_base64(text):
        return "base64"
    return "path"


def _is_base64(text: str) -> bool:
    """Base64 characters and line breaks, up to two '=' of padding, trailing whitespace."""
    stripped = text.rstrip()
    body = stripped.rstrip("=")
    return bool(body) and len(stripped) - len(body) <= 2 and not _NOT_BASE64.search(body)


def _is_file(text: str) -> bool:
    if len(text) > 4096 or "\n" in text:  # cannot be a path; skip the stat
        return False
    try:
        return Path(text).expanduser().is_file()
    except (OSError, ValueError, RuntimeError):  # RuntimeError: ~name of no such user
        return False


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


def describe_source(source: object) -> str:
    """The short printable form of an image input used in error messages."""
    if isinstance(source, (bytes, bytearray, memoryview)):
        return f"<bytes: {len(source)} B>"
    if isinstance(source, os.PathLike):
        return _short(os.fsdecode(source))
    if isinstance(source, Image.Image):
        return f"<PIL.Image {source.mode} {source.width}x{source.height}>"
    if isinstance(source, np.ndarray):
        return f"<ndarray {source.shape} {source.dtype}>"
    if isinstance(source, io.IOBase):
        return _describe_file_object(source)
    if isinstance(source, str):
        kind = _classify(source)
        if kind == "data":
            return f"<data URI: {len(source)} chars>"
        if kind == "base64":
            return f"<base64: {len(source)} chars>"
        return _short(_redact_url(source) if kind == "url" else source)
    return f"<{type(source).__name__}>"


def _describe_file_object(source: io.IOBase) -> str:
    kind = type(source).__name__
    if isinstance(source, io.BytesIO):
        with source.getbuffer() as view:  # released at once: a held view blocks writes
            return f"<{kind}: {view.nbytes} B>"
    name = getattr(source, "name", None)
    return (
        f"<{kind}: {_short(os.fsdecode(name))}>" if isinstance(name, (str, bytes)) else f"<{kind}>"
    )


def is_image_reference(text: str) -> bool:
    """True for an existing file path, an http(s) URL or a data: URI."""
    return _classify(text) in ("url", "data") or _is_file(text)


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


# --- reading encoded bytes --------------------------------------------------------------


def _too_many_bytes(desc: str, size: int, max_bytes: int) -> ImageLoadError:
    return ImageLoadError(
        desc, f"too large: {size} bytes exceeds max_bytes={max_bytes}; raise max_bytes to allow it"
    )


def _decode_base64(text: str, desc: str, max_bytes: int) -> bytes:
    compact = "".join(text.split()).translate(str.maketrans("-_", "+/"))
    if len(compact) * 3 // 4 > max_bytes:
        raise _too_many_bytes(desc, len(compact) * 3 // 4, max_bytes)
    try:  # tolerate missing padding, which many encoders drop
        return base64.b64decode(compact + "=" * (-len(compact) % 4), validate=True)
    except (binascii.Error, ValueError) as exc:
        raise ImageLoadError(desc, f"invalid base64 ({exc})") from exc


def _decode_data_uri(text: str, desc: str, max_bytes: int) -> bytes:
    header, sep, payload = text.partition(",")
    if not sep:
        raise ImageLoadError(desc, "malformed data: URI (no comma before the payload)")
    if not header.lower().endswith(";base64"):
        raise ImageLoadError(
            desc, "only base64 data: URIs are supported (data:image/...;base64,...)"
        )
    return _decode_base64(payload, desc, max_bytes)


# O_NONBLOCK: opening a FIFO never waits for a writer; O_NOCTTY: a terminal never becomes ours.
_OPEN_FLAGS = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_NOCTTY", 0)
_OPEN_FLAGS |= getattr(os, "O_BINARY", 0) | getattr(os, "O_CLOEXEC", 0)


def _file_kind(mode: int) -> str:
    if stat.S_ISDIR(mode):
        return "is a directory, not an image file"
    if stat.S_ISFIFO(mode):
        kind = "a FIFO"
    elif stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        kind = "a device"
    elif stat.S_ISSOCK(mode):
        kind = "a socket"
    else:
        kind = "a special file"
    return f"is {kind}, not a regular file; only regular files are read"


def _expand(path: str | os.PathLike[str], desc: str) -> Path:
    try:
        return Path(path).expanduser()
    except RuntimeError as exc:  # ~name of a user that does not exist
        raise ImageLoadError(desc, f"cannot expand ~ ({exc}); check the user name") from exc
    except ValueError as exc:  # ~ followed by a NUL or a lone surrogate
        raise _open_error(desc, exc) from exc


def _open_error(desc: str, exc: Exception) -> ImageLoadError:
    if isinstance(exc, FileNotFoundError):
        return ImageLoadError(desc, "no such file; check the path")
    if isinstance(exc, OSError):
        return ImageLoadError(desc, f"cannot read file ({exc.strerror or exc})")
    # ValueError (a NUL byte) or UnicodeEncodeError (a lone surrogate): not a valid path
    return ImageLoadError(desc, f"not a valid path ({exc})")


def _read_fd(fd: int, desc: str, max_bytes: int) -> bytes:
    """At most max_bytes: a file that grows while it is read is refused, not read forever."""
    chunks: list[bytes] = []
    total = 0
    while chunk := os.read(fd, min(_CHUNK * 16, max_bytes + 1 - total)):
        total += len(chunk)
        if total > max_bytes:
            raise _too_many_bytes(desc, total, max_bytes)
        chunks.append(chunk)
    return b"".join(chunks)


@contextmanager
def _open_regular(source: str | os.PathLike[str], desc: str) -> Iterator[tuple[int, Path]]:
    """The one guarded way this package opens an image file: yields (descriptor, path).

    Only regular files are opened (links are followed first): a device such as /dev/zero
    would be read until memory runs out, and a FIFO would block. The type is checked before
    opening, the open never waits (O_NONBLOCK), and the type is checked again on the open
    descriptor, so that a path swapped in between is caught too.
    """
    path = _expand(source, desc)
    try:
        mode = os.stat(path).st_mode
    except (OSError, ValueError) as exc:
        raise _open_error(desc, exc) from exc
    if not stat.S_ISREG(mode):
        raise ImageLoadError(desc, _file_kind(mode))
    try:
        fd = os.open(path, _OPEN_FLAGS)
    except OSError as exc:
        raise _open_error(desc, exc) from exc
    try:
        mode = os.fstat(fd).st_mode
        if not stat.S_ISREG(mode):
            raise ImageLoadError(desc, _file_kind(mode))
        yield fd, path
    except OSError as exc:
        raise _open_error(desc, exc) from exc
    finally:
        os.close(fd)


def _read_file(source: str | os.PathLike[str], desc: str, max_bytes: int) -> EncodedImage:
    with _open_regular(source, desc) as (fd, path):
        info = os.fstat(fd)
        if info.st_size > max_bytes:
            raise _too_many_bytes(desc, info.st_size, max_bytes)
        data = _read_fd(fd, desc, max_bytes)
    return EncodedImage(data, str(path), info.st_mtime, info.st_mtime_ns)


def _read_source(source: ImageInput, max_bytes: int, timeout: float) -> EncodedImage:
    desc = describe_source(source)
    if isinstance(source, (bytes, bytearray, memoryview)):
        if len(source) > max_bytes:
            raise _too_many_bytes(desc, len(source), max_bytes)
        return EncodedImage(bytes(source), None)
    if isinstance(source, os.PathLike):
        return _read_file(source, desc, max_bytes)
    if not isinstance(source, str):
        if isinstance(source, (Image.Image, np.ndarray)):
            raise ImageLoadError(desc, "is already decoded: it has no encoded bytes to read")
        raise ImageLoadError(
            desc,
            "unsupported input type; pass a path, URL, bytes, base64 string, PIL image or "
            "uint8 array",
        )
    kind = _classify(source)
    if kind == "url":
        return EncodedImage(fetch_url(source, max_bytes=max_bytes, timeout=timeout), source)
    if kind == "data":
        return EncodedImage(_decode_data_uri(source, desc, max_bytes), None)
    if kind == "base64":
        return EncodedImage(_decode_base64(source, desc, max_bytes), None)
    if kind == "scheme":
        scheme = source.split(":", 1)[0]
        raise ImageLoadError(desc, f"unsupported scheme {scheme!r}; pass an http(s) URL or a path")
    return _read_file(source, desc, max_bytes)


def read_bytes(
    source: ImageInput, *, max_bytes: int = DEFAULT_MAX_BYTES, timeout: float = 10.0
) -> bytes:
    """The raw encoded bytes of a path, URL, bytes, base64 or data: URI source.

    Raises:
        ImageLoadError: the source cannot be read, or is a PIL image or array (no encoding).
    """
    return _read_source(source, max_bytes, timeout).data


def read_encoded(
    source: ImageInput, *, max_bytes: int = DEFAULT_MAX_BYTES, timeout: float = 10.0
) -> EncodedImage:
    """Like `read_bytes`, with the file's path and modification time (from the same open).

    Raises:
        ImageLoadError: the source cannot be read, or is a PIL image or array (no encoding).
    """
    return _read_source(source, max_bytes, timeout)


# --- fetching URLs ----------------------------------------------------------------------


def _check_url(url: str, policy: AccessPolicy | None) -> None:
    """Refuse ambiguous URLs always, and URLs the policy does not allow (AccessDeniedError)."""
    if policy is None:
        parse_url(url)
    else:
        policy.check_url(url)


class _SafeRedirects(urllib.request.HTTPRedirectHandler):
    """Follows redirects only to http(s) URLs on allowed hosts (the stdlib also allows ftp)."""

    def __init__(self, policy: AccessPolicy | None) -> None:
        self.policy = policy

    def redirect_request(
        self, req: Any, fp: Any, code: int, msg: str, headers: Any, newurl: str
    ) -> Any:
        try:
            _check_url(newurl, self.policy)
        except ImageLoadError as exc:
            reason = f"redirect to {newurl} refused: {exc.reason}"
            raise urllib.error.HTTPError(newurl, code, reason, headers, fp) from exc
        return super().redirect_request(req, fp, code, msg, headers, newurl)


def _opener(policy: AccessPolicy | None) -> urllib.request.OpenerDirector:
    # Built by hand so that no file:, ftp: or data: handler is ever installed.
    opener = urllib.request.OpenerDirector()
    for handler in (
        urllib.request.ProxyHandler(),
        urllib.request.HTTPHandler(),
        urllib.request.HTTPSHandler(),
        urllib.request.HTTPDefaultErrorHandler(),
        _SafeRedirects(policy),
        urllib.request.HTTPErrorProcessor(),
    ):
        opener.add_handler(handler)
    return opener


def _check_response(resp: Any, desc: str, max_bytes: int) -> None:
    ctype = (resp.headers.get("Content-Type") or "").split(";")[0].strip().lower()
    if not (ctype.startswith("image/") or ctype == _RAW_MIME):
        raise ImageLoadError(
            desc, f"the server sent Content-Type {ctype or 'none'!r}, not an image; check the URL"
        )
    length = resp.headers.get("Content-Length") or ""
    if length.isdigit() and int(length) > max_bytes:
        raise _too_many_bytes(desc, int(length), max_bytes)


def _read_capped(resp: Any, desc: str, max_bytes: int, timeout: float) -> bytes:
    deadline = time.monotonic() + timeout  # the socket timeout bounds each read, this the total
    chunks: list[bytes] = []
    total = 0
    while chunk := resp.read1(min(_CHUNK, max_bytes + 1 - total)):
        total += len(chunk)
        if total > max_bytes:
            raise _too_many_bytes(desc, total, max_bytes)
        if time.monotonic() > deadline:
            raise ImageLoadError(desc, f"timed out after {timeout:g}s")
        chunks.append(chunk)
    return b"".join(chunks)


def fetch_url(
    url: str,
    *,
    max_bytes: int,
    timeout: float,
    allowed_hosts: Collection[str] | None = None,
) -> bytes:
    """Download an image over http(s) with a timeout, a byte cap and a Content-Type check.

    Args:
        url: an http:// or https:// URL; other schemes (file://, ftp://) are refused.
        max_bytes: refuse bodies longer than this, without reading past it.
        timeout: seconds allowed to connect, for each read, and for the whole body.
        allowed_hosts: if given, the only host names the URL (and redirects) may name.

    Raises:
        ImageLoadError: on any failure, naming the URL and the reason.
    """
    policy = None if allowed_hosts is None else AccessPolicy(url_hosts=allowed_hosts)
    _check_url(url, policy)  # first: a malformed URL is refused before anything parses it
    desc = describe_source(url)
    request = urllib.request.Request(
        url, headers={"Accept": "image/*", "User-Agent": "clip-multimodal"}
    )
    try:
        with _opener(policy).open(request, timeout=timeout) as resp:
            _check_response(resp, desc, max_bytes)
            return _read_capped(resp, desc, max_bytes, timeout)
    except ImageLoadError:
        raise  # our own reason (too large, not an image), not wrapped a second time
    except urllib.error.HTTPError as exc:
        exc.close()
        raise ImageLoadError(desc, f"HTTP {exc.code}: {exc.reason}") from exc
    except urllib.error.URLError as exc:
        if isinstance(exc.reason, TimeoutError):
            raise ImageLoadError(desc, f"timed out after {timeout:g}s") from exc
        raise ImageLoadError(desc, f"cannot fetch ({exc.reason})") from exc
    except TimeoutError as exc:
        raise ImageLoadError(desc, f"timed out after {timeout:g}s") from exc
    except (OSError, http.client.HTTPException, ValueError) as exc:
        raise ImageLoadError(desc, f"cannot fetch ({exc})") from exc


# --- decoding and normalizing -----------------------------------------------------------


@contextmanager
def _pil_bomb_guard(max_pixels: int | None) -> Iterator[bool]:
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
def _pil_errors(desc: str, reason: str) -> Iterator[None]:
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


def _open(data: bytes, desc: str, max_pixels: int | None) -> Image.Image:
    if not data:
        raise ImageLoadError(desc, "empty input (0 bytes)")
    image = Image.open(io.BytesIO(data))
    _check_pixels(image.size, max_pixels, desc)
    return image


def _check_draft(draft: tuple[int, int]) -> None:
    if draft[0] <= 0 or draft[1] <= 0:
        raise ValueError(f"draft must be a positive (width, height), got {draft}")


def _apply_draft(image: Image.Image, draft: tuple[int, int]) -> None:
    if image.format != "JPEG":
        return
    # draft works on the stored pixels: ask for the stored shape of the displayed size.
    rotated = orientation(image) in ROTATED_ORIENTATIONS
    image.draft(None, (draft[1], draft[0]) if rotated else draft)


# --- the decode budget: memory, judged from the header ----------------------------------


def _check_budget(image: Image.Image, max_decode_bytes: int | None, desc: str) -> int:
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
    """

    mime: str
    width: int
    height: int
    decode_cost: int


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
    desc = desc or describe_source(data)
    with _pil_errors(desc, "cannot decode"), _pil_bomb_guard(max_pixels):
        image = _open(data, desc, max_pixels)
        cost = _check_budget(image, max_decode_bytes, desc)
        width, height = image.size
        if orientation(image) in ROTATED_ORIENTATIONS:
            width, height = height, width
        return ImageHeader(Image.MIME.get(image.format or "", _RAW_MIME), width, height, cost)


def _finish(image: Image.Image, desc: str) -> Image.Image:
    """A caller's image: apply EXIF orientation and convert to RGB, in a copy."""
    with _pil_errors(desc, "truncated or corrupt image data"):
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
    _check_budget(image, max_decode_bytes, desc)
    with _pil_errors(desc, "truncated or corrupt image data"):
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
    with _pil_errors(desc, "cannot decode"):
        with _pil_bomb_guard(max_pixels) as lifted:
            image = _open(data, desc, max_pixels)
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
    if policy is not None:
        policy.check(source)
    desc = describe_source(source)
    if isinstance(source, (Image.Image, np.ndarray)):
        rgb = _from_pixels(source, desc)
        pixels = rgb.tobytes()
        digest = hashlib.sha256(f"{rgb.width}x{rgb.height}:".encode() + pixels).hexdigest()
        mime = (
            Image.MIME.get(source.format or "", _RAW_MIME)
            if isinstance(source, Image.Image)
            else _RAW_MIME
        )
        return rgb, ImageInfo(None, digest, mime, rgb.width, rgb.height, len(pixels), None)
    encoded = _read_source(source, max_bytes, timeout)
    rgb, fmt, (width, height) = _decode(encoded.data, desc, max_pixels, draft, max_decode_bytes)
    digest = hashlib.sha256(encoded.data).hexdigest()
    mime = Image.MIME.get(fmt or "", _RAW_MIME)
    info = ImageInfo(encoded.uri, digest, mime, width, height, len(encoded.data), encoded.mtime)
    return rgb, info


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
        source: a path (str or Path), an http(s) URL, raw bytes, a base64 string or data: URI,
            a PIL image, or a uint8 numpy array (H, W), (H, W, 1), (H, W, 3) or (H, W, 4).
        max_pixels: refuse encoded images with more pixels (decompression bombs); None: no cap.
        max_bytes: refuse files, URL bodies, bytes and base64 payloads longer than this.
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
    if policy is not None:
        policy.check(source)
    desc = describe_source(source)
    if isinstance(source, (Image.Image, np.ndarray)):
        return _from_pixels(source, desc)
    data = _read_source(source, max_bytes, timeout).data
    return _decode(data, desc, max_pixels, draft, max_decode_bytes)[0]


# --- files and encodings ----------------------------------------------------------------


def file_fingerprint(path: str | Path) -> tuple[float, int]:
    """(mtime, size) of a file from one stat, without reading it."""
    try:
        stat = os.stat(path)
    except OSError as exc:
        raise ImageLoadError(describe_source(path), f"cannot stat ({exc.strerror})") from exc
    return stat.st_mtime, stat.st_size


def sha256_file(path: str | Path) -> str:
    """Hex SHA-256 of a regular file's bytes, read in chunks."""
    digest = hashlib.sha256()
    with _open_regular(path, describe_source(path)) as (fd, _):
        while chunk := os.read(fd, 2**20):
            digest.update(chunk)
    return digest.hexdigest()


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
    return f"data:{Image.MIME.get(_pil_format(format), _RAW_MIME)};base64,{payload}"


def _pil_format(name: str) -> str:
    upper = name.upper()
    return "JPEG" if upper == "JPG" else upper
