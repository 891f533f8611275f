"""Recognizing a damaged, busy or unreachable store, and saying so with its path and the fix.

Chroma reports damage as raw errors ("database disk image is malformed", "Error loading hnsw
index") or not at all: a deleted or emptied `chroma.sqlite3` is silently re-created empty, and
a deleted HNSW folder makes queries reach only the records written since its last save. Here
every Chroma call is guarded: passing errors (two processes creating one store) are retried,
damage becomes `IndexDamagedError`, a server that does not answer `IndexUnavailableError`.
"""

from __future__ import annotations

import contextlib
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from clip_multimodal.errors import IndexDamagedError, IndexUnavailableError

if TYPE_CHECKING:
    from chromadb.api import ClientAPI

__all__ = [
    "SQLITE_NAME",
    "StoreRef",
    "damaged",
    "forget_client",
    "full_query",
    "guarded",
    "segment_folders",
    "store_files_problem",
    "unreachable",
]

T = TypeVar("T")

SQLITE_NAME = "chroma.sqlite3"
_UUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")

#: Errors of two processes racing on one store; they pass when retried.
_PASSING = ("already exists", "nothing found on disk", "database is locked")
#: Errors that mean the files are damaged (matched case-insensitively).
_DAMAGE = (
    "database disk image is malformed",
    "file is not a database",
    "hnsw",
    "pickle",
    "error finding id",
)
_RETRY_DELAYS_S = (0.05, 0.2, 0.5, 1.0)

REPAIR = (
    "Rebuild the collection from its images with `clip-multimodal index DIR --rebuild` "
    "(`ImageIndex.rebuild(...)` in Python)"
)


@dataclass(frozen=True)
class StoreRef:
    """Where a collection's store is, for messages and locks.

    Attributes:
        path: an embedded store's folder; None for a server.
        server: a server's "host:port"; None for an embedded store.
        timeout_s: how long a server call may take.
    """

    path: Path | None = None
    server: str | None = None
    timeout_s: float | None = None

    def __str__(self) -> str:
        if self.path is not None:
            return f"the Chroma store at {self.path}"
        if self.server is not None:
            return f"the Chroma server at {self.server}"
        return "the Chroma store"

    @classmethod
    def of(cls, client: ClientAPI, timeout_s: float | None = None) -> StoreRef:
        settings = client.get_settings()
        if settings.is_persistent and settings.persist_directory:
            return cls(path=Path(settings.persist_directory))
        if settings.chroma_server_host:
            server = f"{settings.chroma_server_host}:{settings.chroma_server_http_port}"
            return cls(None, server, timeout_s)
        return cls()  # an in-memory client


def damaged(ref: StoreRef, problem: str) -> IndexDamagedError:
    """The error for a damaged store: what is wrong, where, and the repair."""
    aside = " (the damaged store is moved aside, not deleted)" if ref.path is not None else ""
    return IndexDamagedError(f"{ref} is damaged: {problem}. {REPAIR}{aside}.")


def segment_folders(path: Path) -> list[Path]:
    """The per-segment folders (HNSW files) of an embedded store."""
    if not path.is_dir():
        return []
    return [d for d in path.iterdir() if d.is_dir() and _UUID.match(d.name)]


def store_files_problem(path: Path) -> str | None:
    """What is wrong with an embedded store's files before Chroma opens them, else None.

    Chroma would silently create an empty database where `chroma.sqlite3` is missing or
    empty; when index folders remain beside it, records were lost, so that is damage.
    """
    folders = segment_folders(path)
    if not folders:
        return None
    sqlite = path / SQLITE_NAME
    remain = f"{len(folders)} index folder(s) remain"
    if not sqlite.exists():
        return f"{SQLITE_NAME} is missing but {remain}"
    if sqlite.stat().st_size == 0:
        return f"{SQLITE_NAME} is empty (0 bytes) but {remain}"
    return None


def guarded(call: Callable[[], T], ref: StoreRef) -> T:
    """Run one Chroma call: retry passing race errors, translate damage and timeouts."""
    for delay in (*_RETRY_DELAYS_S, None):
        try:
            return call()
        except Exception as exc:
            message = str(exc).lower()
            if delay is not None and _is_chroma(exc) and any(p in message for p in _PASSING):
                time.sleep(delay)
                continue
            translated = _translate(exc, message, ref)
            if translated is None:
                raise
            raise translated from exc
    raise AssertionError("unreachable")  # pragma: no cover


def _is_chroma(exc: Exception) -> bool:
    return type(exc).__module__.startswith("chromadb")


def _translate(exc: Exception, message: str, ref: StoreRef) -> Exception | None:
    import httpx

    if isinstance(exc, httpx.TimeoutException):
        limit = f"within {ref.timeout_s:g} s" if ref.timeout_s else "in time"
        return IndexUnavailableError(
            f"{ref} did not answer {limit} ({type(exc).__name__}). Check that it is running "
            "and not stuck, or give a longer timeout (ImageIndex(..., timeout=SECONDS))."
        )
    if isinstance(exc, httpx.TransportError):
        return IndexUnavailableError(f"cannot reach {ref} ({exc}); check that it is running")
    if _is_chroma(exc) and any(p in message for p in _DAMAGE):
        return damaged(ref, f"Chroma says: {str(exc)[:300]}")
    return None


def full_query(
    query: Callable[[], Any], n_results: int, count: Callable[[], int], ref: StoreRef, name: str
) -> Any:
    """Run an unfiltered query; raise if it reaches fewer records than the collection holds.

    A short answer is asked twice (a concurrent delete may shrink the collection between the
    query and the count), so only a store that keeps answering short is called damaged.
    """
    result = query()
    for attempt in range(2):
        got = len(result["ids"][0])
        if got >= n_results:
            return result
        expected = min(n_results, count())
        if got >= expected:
            return result
        if attempt == 0:
            result = query()
    raise unreachable(ref, name, expected, got)


def unreachable(ref: StoreRef, name: str, count: int, reached: int) -> IndexDamagedError:
    return damaged(
        ref,
        f"collection {name!r} holds {count} records but a query reaches only {reached}: its "
        "vector index (the HNSW files) is missing or damaged",
    )


def forget_client(folder: Path) -> None:
    """Drop Chroma's cached store for this folder (one per path per process), so that the
    next client opens the files anew: after a failed open (Chroma keeps a broken one) or
    after the folder was moved aside."""
    from chromadb.api.shared_system_client import SharedSystemClient

    system = SharedSystemClient._identifier_to_system.pop(str(folder), None)
    SharedSystemClient._identifier_to_refcount.pop(str(folder), None)
    if system is not None:
        with contextlib.suppress(Exception):
            system.stop()
