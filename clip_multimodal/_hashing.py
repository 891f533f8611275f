"""Content hashes of streams too big to hold: the one chunked SHA-256 (weights, image files)."""

from __future__ import annotations

import hashlib
from collections.abc import Callable

__all__ = ["sha256_stream"]

_BLOCK = 2**20


def sha256_stream(read: Callable[[int], bytes]) -> str:
    """Hex SHA-256 of everything `read(n)` returns until it returns b"", a block at a time."""
    digest = hashlib.sha256()
    while block := read(_BLOCK):
        digest.update(block)
    return digest.hexdigest()
