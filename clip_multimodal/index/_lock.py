"""Advisory file locks on an embedded Chroma folder: one writing process at a time.

Embedded Chroma is not made for several processes: two writers on one folder can fail with
"table collections already exists" or "Nothing found on disk" and write nothing. Writers (add,
index_folder, delete, writer) hold an exclusive `flock` on `clip-multimodal.lock` in the folder
for the whole call; readers never take it. Opening a client holds a second lock for the few
milliseconds of Chroma's own setup, so two processes never create the same store at once.
The locks are per process: the threads of one process share them (the index serializes its own
calls). Where `fcntl` is missing (Windows), there is no lock.
"""

from __future__ import annotations

import functools
import os
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Concatenate, ParamSpec, Protocol, TypeVar

from clip_multimodal.errors import IndexLockedError

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None  # type: ignore[assignment]

__all__ = ["LOCK_NAME", "open_lock", "sole_writer", "write_lock", "writes"]

LOCK_NAME = "clip-multimodal.lock"
_OPEN_LOCK_NAME = "clip-multimodal.open.lock"
_POLL_S = 0.05


@dataclass
class _Held:
    fd: int
    depth: int  # calls of this process holding it now
    taken: int = 0  # times a call of this process has taken it since it was acquired


_held: dict[str, _Held] = {}
_held_guard = threading.Lock()


@contextmanager
def write_lock(folder: Path | None, timeout_s: float = 0.0) -> Iterator[None]:
    """Hold the folder's write lock; None (a server, or no folder known) holds nothing.

    Raises:
        IndexLockedError: another process holds it for longer than `timeout_s` (0: at once).
    """
    if folder is None or fcntl is None:
        yield
        return
    key = str(folder / LOCK_NAME)
    with _held_guard:
        held = _held.get(key)
        if held is None:
            held = _Held(_acquire(folder, key, timeout_s), 0)
            _held[key] = held
        held.depth += 1
        held.taken += 1
    try:
        yield
    finally:
        with _held_guard:
            held.depth -= 1
            if held.depth == 0:
                del _held[key]
                os.close(held.fd)  # closing the file releases the flock


def sole_writer(folder: Path | None) -> Callable[[], bool]:
    """A check, made from inside a write call, that stays true while that call is the only
    writer of the embedded store at `folder`: this process holds its lock (other processes
    wait) in this one call, and no other call of this process has taken it since.

    Always false without a folder or lock (a server, an in-memory client): other writers
    cannot be ruled out there.
    """
    if folder is None or fcntl is None:
        return lambda: False
    key = str(folder / LOCK_NAME)
    with _held_guard:
        held = _held.get(key)
        if held is None or held.depth != 1:
            return lambda: False
        mark = held.taken

    def alone() -> bool:
        with _held_guard:
            return _held.get(key) is held and held.depth == 1 and held.taken == mark

    return alone


def _acquire(folder: Path, key: str, timeout_s: float) -> int:
    folder.mkdir(parents=True, exist_ok=True)
    fd = os.open(key, os.O_RDWR | os.O_CREAT, 0o644)
    if not _flock(fd, timeout_s):
        holder = _holder(fd)
        os.close(fd)
        raise IndexLockedError(_locked_message(folder, holder, timeout_s))
    os.ftruncate(fd, 0)
    os.pwrite(fd, str(os.getpid()).encode(), 0)  # so that the next writer can name us
    return fd


def _flock(fd: int, timeout_s: float) -> bool:
    """Take the exclusive lock, polling until `timeout_s`; False if another process kept it."""
    assert fcntl is not None
    deadline = time.monotonic() + max(0.0, timeout_s)
    while True:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return True
        except BlockingIOError:
            if time.monotonic() >= deadline:
                return False
            time.sleep(_POLL_S)


def _holder(fd: int) -> str:
    try:
        return os.pread(fd, 32, 0).decode().strip() or "unknown"
    except (OSError, UnicodeDecodeError):
        return "unknown"


def _locked_message(folder: Path, holder: str, timeout_s: float) -> str:
    waited = f"after waiting {timeout_s:g} s" if timeout_s > 0 else "not waiting"
    return (
        f"another process (pid {holder}) is writing to the index at {folder} ({waited}). "
        "Run again when it has finished, or pass lock_timeout=SECONDS to ImageIndex to wait."
    )


@contextmanager
def open_lock(folder: Path, timeout_s: float = 60.0) -> Iterator[None]:
    """Hold the folder's open lock while a Chroma client is created there (blocking)."""
    if fcntl is None:
        yield
        return
    folder.mkdir(parents=True, exist_ok=True)
    fd = os.open(str(folder / _OPEN_LOCK_NAME), os.O_RDWR | os.O_CREAT, 0o644)
    try:
        if not _flock(fd, timeout_s):
            raise IndexLockedError(
                f"another process has been opening the index at {folder} for over "
                f"{timeout_s:g} s; check for a stuck clip-multimodal or Chroma process"
            )
        yield
    finally:
        os.close(fd)


class _Writer(Protocol):
    def _writing(self, operation: str) -> AbstractContextManager[None]: ...


W = TypeVar("W", bound=_Writer)
P = ParamSpec("P")
R = TypeVar("R")


def writes(
    operation: str,
) -> Callable[[Callable[Concatenate[W, P], R]], Callable[Concatenate[W, P], R]]:
    """Decorate an index method that writes: it runs inside `self._writing(operation)` (which
    refuses a read-only index and holds the write lock)."""

    def wrap(method: Callable[Concatenate[W, P], R]) -> Callable[Concatenate[W, P], R]:
        @functools.wraps(method)
        def locked(index: W, /, *args: P.args, **kwargs: P.kwargs) -> R:
            with index._writing(operation):
                return method(index, *args, **kwargs)

        return locked

    return wrap
