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
import struct
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

from clip_multimodal.access import AccessPolicy, parse_url
from clip_multimodal.errors import ImageLoadError
from clip_multimodal.types import ImageInput

__all__ = [
    "DEFAULT_MAX_BYTES",
    "DEFAULT_MAX_PIXELS",
    "ImageInfo",
    "ImageInput",
    "describe_source",
    "fetch_url",
    "file_fingerprint",
    "is_image_reference",
    "load_image",
    "load_image_with_info",
    "read_bytes",
    "sha256_file",
    "to_base64",
    "to_data_uri",
]

DEFAULT_MAX_PIXELS: int = 89_478_485  # PIL's own default limit
DEFAULT_MAX_BYTES: int = 50 * 2**20

_SCHEME = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*)://")
_BASE64 = re.compile(r"^[A-Za-z0-9+/\r\n]+={0,2}\s*$")  # wrapped lines, never spaces
_MIN_BASE64_CHARS = 32  # shorter strings cannot hold a real image; treat them as paths
_ALPHA_MODES = frozenset({"RGBA", "LA", "PA", "RGBa", "La"})
_ROTATED_ORIENTATIONS = frozenset({5, 6, 7, 8})  # EXIF values that swap width and height
_ORIENTATION_TAG = 0x0112
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


class _Encoded(NamedTuple):
    data: bytes
    uri: str | None
    mtime: float | None


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
    if len(text) >= _MIN_BASE64_CHARS and _BASE64.match(text):
        return "base64"
    return "path"


def _is_file(text: str) -> bool:
    if len(text) > 4096 or "\n" in text:  # cannot be a path; skip the stat
        return False
    try:
        return Path(text).expanduser().is_file()
    except (OSError, ValueError):
        return False


def _short(text: str, limit: int = 160) -> str:
    text = text if text.isprintable() else ascii(text)
    return text if len(text) <= limit else f"{text[: limit - 40]}...{text[-37:]}"


def _redact_url(url: str) -> str:
    parts = urlsplit(url)
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
    if isinstance(source, str):
        kind = _classify(source)
        if kind == "data":
            return f"<data URI: {len(source)} chars>"
        if kind == "base64":
            return f"<base64: {len(source)} chars>"
        return _short(_redact_url(source) if kind == "url" else source)
    return f"<{type(source).__name__}>"


def is_image_reference(text: str) -> bool:
    """True for an existing file path, an http(s) URL or a data: URI."""
    return _classify(text) in ("url", "data") or _is_file(text)


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


def _read_file(path: Path, desc: str) -> _Encoded:
    path = path.expanduser()
    if path.is_dir():
        raise ImageLoadError(desc, "is a directory, not an image file")
    try:
        with path.open("rb") as fh:
            mtime = os.fstat(fh.fileno()).st_mtime
            return _Encoded(fh.read(), str(path), mtime)
    except FileNotFoundError as exc:
        raise ImageLoadError(desc, "no such file; check the path") from exc
    except OSError as exc:
        raise ImageLoadError(desc, f"cannot read file ({exc.strerror or exc})") from exc


def _read_source(source: ImageInput, max_bytes: int, timeout: float) -> _Encoded:
    desc = describe_source(source)
    if isinstance(source, (bytes, bytearray, memoryview)):
        if len(source) > max_bytes:
            raise _too_many_bytes(desc, len(source), max_bytes)
        return _Encoded(bytes(source), None, None)
    if isinstance(source, os.PathLike):
        return _read_file(Path(source), desc)
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
        return _Encoded(fetch_url(source, max_bytes=max_bytes, timeout=timeout), source, None)
    if kind == "data":
        return _Encoded(_decode_data_uri(source, desc, max_bytes), None, None)
    if kind == "base64":
        return _Encoded(_decode_base64(source, desc, max_bytes), None, None)
    if kind == "scheme":
        scheme = source.split(":", 1)[0]
        raise ImageLoadError(desc, f"unsupported scheme {scheme!r}; pass an http(s) URL or a path")
    return _read_file(Path(source), desc)


def read_bytes(
    source: ImageInput, *, max_bytes: int = DEFAULT_MAX_BYTES, timeout: float = 10.0
) -> bytes:
    """The raw encoded bytes of a path, URL, bytes, base64 or data: URI source.

    Raises:
        ImageLoadError: the source cannot be read, or is a PIL image or array (no encoding).
    """
    return _read_source(source, max_bytes, timeout).data


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
    """Map PIL's many failure types to one ImageLoadError."""
    try:
        yield
    except ImageLoadError:
        raise
    except UnidentifiedImageError as exc:
        raise ImageLoadError(desc, "not an image PIL can decode") from exc
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise ImageLoadError(desc, f"too large, possible decompression bomb ({exc})") from exc
    except (OSError, SyntaxError, ValueError, EOFError, struct.error) as exc:
        raise ImageLoadError(desc, f"{reason} ({exc})") from exc


def _open(data: bytes, desc: str, max_pixels: int | None) -> Image.Image:
    if not data:
        raise ImageLoadError(desc, "empty input (0 bytes)")
    with _pil_errors(desc, "cannot decode"):
        image = Image.open(io.BytesIO(data))
    _check_pixels(image.size, max_pixels, desc)
    return image


def _apply_draft(image: Image.Image, draft: tuple[int, int]) -> None:
    if draft[0] <= 0 or draft[1] <= 0:
        raise ValueError(f"draft must be a positive (width, height), got {draft}")
    if image.format != "JPEG":
        return
    # draft works on the stored pixels: ask for the stored shape of the displayed size.
    rotated = image.getexif().get(_ORIENTATION_TAG, 1) in _ROTATED_ORIENTATIONS
    image.draft(None, (draft[1], draft[0]) if rotated else draft)


def _scale_to_l(image: Image.Image) -> Image.Image:
    """16-bit, 32-bit and float grey to 8-bit by scaling, where PIL's convert would clip."""
    values = np.nan_to_num(np.asarray(image, dtype=np.float64))
    if image.mode.startswith("I;16") or (image.mode == "I" and values.max() > 255):
        values = values.clip(0, 65535) / 257.0
    elif image.mode == "F" and values.min() >= 0 and values.max() <= 1:
        values = values * 255.0  # floats in [0, 1] are the usual convention
    return Image.fromarray(np.rint(values).clip(0, 255).astype(np.uint8))


def _on_white(image: Image.Image) -> Image.Image:
    rgba = image.convert("RGBA")
    white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
    return Image.alpha_composite(white, rgba).convert("RGB")


def _to_rgb(image: Image.Image) -> Image.Image:
    if image.mode.startswith("I") or image.mode == "F":
        return _scale_to_l(image).convert("RGB")
    if image.mode in _ALPHA_MODES or "transparency" in image.info:
        return _on_white(image)
    return image if image.mode == "RGB" else image.convert("RGB")


def _finish(image: Image.Image, desc: str) -> Image.Image:
    """Load, apply EXIF orientation and convert to RGB; the result owns its pixels."""
    with _pil_errors(desc, "truncated or corrupt image data"):
        image.load()
        return _to_rgb(ImageOps.exif_transpose(image))  # a copy: never the caller's object


def _decode_opened(
    image: Image.Image, desc: str, draft: tuple[int, int] | None
) -> tuple[Image.Image, str | None, tuple[int, int]]:
    stored = image.size
    if draft is not None:
        _apply_draft(image, draft)
    rgb = _finish(image, desc)  # an animation stays on frame 0, where open left it
    rotated = rgb.size != image.size
    return rgb, image.format, (stored[1], stored[0]) if rotated else stored


def _decode(
    data: bytes, desc: str, max_pixels: int | None, draft: tuple[int, int] | None
) -> tuple[Image.Image, str | None, tuple[int, int]]:
    """Decode to RGB; also return the format and the original (oriented) size."""
    with _pil_bomb_guard(max_pixels) as lifted:
        image = _open(data, desc, max_pixels)
        if lifted:  # PIL's limit also applies while loading: keep it lifted (rare, big images)
            return _decode_opened(image, desc, draft)
    return _decode_opened(image, desc, draft)  # only the fast header parse was serialized


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
    rgb, fmt, (width, height) = _decode(encoded.data, desc, max_pixels, draft)
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
    policy: AccessPolicy | None = None,
) -> Image.Image:
    """Load any image input as a fully decoded RGB PIL image.

    Args:
        source: a path (str or Path), an http(s) URL, raw bytes, a base64 string or data: URI,
            a PIL image, or a uint8 numpy array (H, W), (H, W, 1), (H, W, 3) or (H, W, 4).
        max_pixels: refuse encoded images with more pixels (decompression bombs); None: no cap.
        max_bytes: refuse URL bodies, bytes and base64 payloads longer than this.
        timeout: seconds allowed for a URL fetch.
        draft: opt-in fast JPEG decode at a reduced scale of at least this (width, height).
            It changes pixels, so it is off by default.
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
    return _decode(data, desc, max_pixels, draft)[0]


# --- files and encodings ----------------------------------------------------------------


def file_fingerprint(path: str | Path) -> tuple[float, int]:
    """(mtime, size) of a file from one stat, without reading it."""
    try:
        stat = os.stat(path)
    except OSError as exc:
        raise ImageLoadError(describe_source(path), f"cannot stat ({exc.strerror})") from exc
    return stat.st_mtime, stat.st_size


def sha256_file(path: str | Path) -> str:
    """Hex SHA-256 of a file's bytes, read in chunks."""
    digest = hashlib.sha256()
    try:
        with open(path, "rb") as fh:
            while chunk := fh.read(2**20):
                digest.update(chunk)
    except OSError as exc:
        raise ImageLoadError(describe_source(path), f"cannot read ({exc.strerror})") from exc
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
