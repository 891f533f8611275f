"""The byte caps every reader applies, and the one capped read loop they share."""

from __future__ import annotations

import time
from collections.abc import Callable

from clip_multimodal.errors import ImageLoadError

__all__ = ["DEFAULT_MAX_BYTES", "DEFAULT_MAX_DECODE_BYTES", "DEFAULT_MAX_PIXELS", "read_capped"]

DEFAULT_MAX_PIXELS: int = 89_478_485  # PIL's own default limit
DEFAULT_MAX_BYTES: int = 50 * 2**20
DEFAULT_MAX_DECODE_BYTES: int = 512 * 2**20  # fits an 8-bit RGB image at DEFAULT_MAX_PIXELS

CHUNK = 64 * 1024


def too_many_bytes(desc: str, size: int, max_bytes: int) -> ImageLoadError:
    return ImageLoadError(
        desc, f"too large: {size} bytes exceeds max_bytes={max_bytes}; raise max_bytes to allow it"
    )


def read_capped(
    read: Callable[[int], bytes],
    desc: str,
    max_bytes: int,
    *,
    chunk: int = CHUNK * 16,
    timeout: float | None = None,
) -> bytes:
    """Read until EOF, at most max_bytes: a source that grows while it is read (a file being
    written, an endless response) is refused, not read forever.

    Args:
        read: returns up to n bytes, b"" at the end (os.read on a descriptor, read1, read).
        desc: how errors name the input.
        max_bytes: the cap.
        chunk: the most bytes one call asks for.
        timeout: seconds for the whole read (a socket's own timeout bounds each call).
    """
    deadline = None if timeout is None else time.monotonic() + timeout
    chunks: list[bytes] = []
    total = 0
    while data := read(min(chunk, max_bytes + 1 - total)):
        total += len(data)
        if total > max_bytes:
            raise too_many_bytes(desc, total, max_bytes)
        if deadline is not None and time.monotonic() > deadline:
            raise ImageLoadError(desc, f"timed out after {timeout:g}s")
        chunks.append(bytes(data))
    return b"".join(chunks)
