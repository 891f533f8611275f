"""Reading image files and file objects: the one guarded open, and capped reads.

Only regular files are opened: a device such as /dev/zero would be read until memory runs
out, and a FIFO would block. Every read is capped at max_bytes.
"""

from __future__ import annotations

import io
import os
import stat
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from clip_multimodal._hashing import sha256_stream
from clip_multimodal.errors import ImageLoadError
from clip_multimodal.images._kinds import describe_source
from clip_multimodal.images._limits import read_capped, too_many_bytes

__all__ = ["file_fingerprint", "open_regular", "read_file", "read_file_object", "sha256_file"]

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


def _pre_open_mode(path: Path, desc: str, known: os.stat_result | None) -> int:
    if known is not None:  # classification already stat'ed it
        return known.st_mode
    try:
        return os.stat(path).st_mode
    except (OSError, ValueError) as exc:
        raise _open_error(desc, exc) from exc


@contextmanager
def open_regular(
    source: str | os.PathLike[str], desc: str, known: os.stat_result | None = None
) -> Iterator[tuple[int, Path, os.stat_result]]:
    """The one guarded way this package opens an image file: yields (descriptor, path, fstat).

    The type is checked before opening (from `known`, the classification's stat, if given),
    the open never waits (O_NONBLOCK), and the type is checked again on the open
    descriptor, so that a path swapped in between is caught too.
    """
    path = _expand(source, desc)
    mode = _pre_open_mode(path, desc, known)
    if not stat.S_ISREG(mode):
        raise ImageLoadError(desc, _file_kind(mode))
    try:
        fd = os.open(path, _OPEN_FLAGS)
    except OSError as exc:
        raise _open_error(desc, exc) from exc
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise ImageLoadError(desc, _file_kind(info.st_mode))
        yield fd, path, info
    except OSError as exc:
        raise _open_error(desc, exc) from exc
    finally:
        os.close(fd)


def read_file(
    source: str | os.PathLike[str],
    desc: str,
    max_bytes: int,
    known: os.stat_result | None = None,
) -> tuple[bytes, Path, os.stat_result]:
    """A regular file's bytes, its path (~ expanded) and the stat of what was read."""
    with open_regular(source, desc, known) as (fd, path, info):
        if info.st_size > max_bytes:
            raise too_many_bytes(desc, info.st_size, max_bytes)
        data = read_capped(lambda n: os.read(fd, n), desc, max_bytes)
    return data, path, info


def read_file_object(source: Any, desc: str, max_bytes: int) -> bytes:
    """A binary file object's bytes: a BytesIO's whole buffer, any other from its position."""
    if isinstance(source, io.TextIOBase):
        raise ImageLoadError(desc, "the file object is opened in text mode; open it with 'rb'")
    try:
        if isinstance(source, io.BytesIO):
            return _buffer(source, desc, max_bytes)
        return read_capped(_binary_reader(source, desc), desc, max_bytes)
    except ImageLoadError:
        raise
    except (OSError, ValueError) as exc:  # closed, or not readable
        raise ImageLoadError(desc, f"cannot read the file object ({exc})") from exc


def _buffer(source: io.BytesIO, desc: str, max_bytes: int) -> bytes:
    with source.getbuffer() as view:  # wherever its read position is, as getvalue
        if view.nbytes > max_bytes:
            raise too_many_bytes(desc, view.nbytes, max_bytes)
        return bytes(view)


def _binary_reader(source: Any, desc: str) -> Any:
    def read(n: int) -> bytes:
        data = source.read(n)
        if data is None:  # a non-blocking raw stream with nothing ready
            raise ImageLoadError(desc, "the file object has no data ready (non-blocking)")
        if not isinstance(data, (bytes, bytearray, memoryview)):
            raise ImageLoadError(desc, "the file object is not opened in binary mode ('rb')")
        return bytes(data)

    return read


def file_fingerprint(path: str | Path) -> tuple[float, int]:
    """(mtime, size) of a file from one stat, without reading it."""
    try:
        found = os.stat(path)
    except OSError as exc:
        raise ImageLoadError(describe_source(path), f"cannot stat ({exc.strerror})") from exc
    return found.st_mtime, found.st_size


def sha256_file(path: str | Path) -> str:
    """Hex SHA-256 of a regular file's bytes, read in chunks."""
    with open_regular(path, describe_source(path)) as (fd, _, _):
        return sha256_stream(lambda n: os.read(fd, n))
