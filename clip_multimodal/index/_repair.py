"""Checking a collection end to end (`info --check`) and discarding a damaged one (`--rebuild`)."""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import sqlite3
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from clip_multimodal.errors import IndexDamagedError, IndexNotFoundError
from clip_multimodal.index._health import (
    SQLITE_NAME,
    StoreRef,
    forget_client,
    guarded,
    store_files_problem,
    unreachable,
)
from clip_multimodal.index._lock import write_lock
from clip_multimodal.index._store import client_for, default_data_dir, get_existing

if TYPE_CHECKING:
    from chromadb.api import ClientAPI

__all__ = ["HealthReport", "check_collection", "discard_collection"]

logger = logging.getLogger(__name__)

#: The files every saved HNSW index has; none may be empty. The id map
#: (index_metadata.pickle) appears at the first sync and may not be empty either.
_HNSW_FILES = ("header.bin", "data_level0.bin", "length.bin")
_HNSW_ID_MAP = "index_metadata.pickle"


@dataclass
class HealthReport:
    """What `check_collection` found.

    Attributes:
        name: the collection name.
        store: where it lives (a path, or a server's host:port).
        exists: whether the collection exists.
        count: how many records the collection says it holds (None if unreadable).
        reachable: how many of them a query reaches (None if it could not run).
        problems: each problem found, with its location; empty when healthy.
    """

    name: str
    store: str
    exists: bool = False
    count: int | None = None
    reachable: int | None = None
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems


def check_collection(
    collection: str,
    path: str | os.PathLike[str] | None = None,
    *,
    client: ClientAPI | None = None,
    host: str | None = None,
    port: int | None = None,
) -> HealthReport:
    """Check a collection's files (embedded) and that a query reaches every record it holds.

    Reads only: nothing is created or changed. A missing collection is no problem (it is
    created by the first index run) unless the store's files are damaged.
    """
    embedded = client is None and host is None and port is None
    folder = _folder(path) if embedded else None
    where = f"{host or 'localhost'}:{port or 8000}" if client is None else "the client given"
    report = HealthReport(collection, str(folder) if folder else where)
    if folder is not None:
        report.problems += _file_problems(folder, collection)
        if report.problems:
            return report  # opening the store now would replace the lost database
    try:
        chroma = client_for(client, path if embedded else None, host, port)
        found = get_existing(chroma, collection)
        report.exists = True
        _check_reach(found, StoreRef.of(chroma), report)
    except IndexNotFoundError:
        pass
    except IndexDamagedError as exc:
        report.problems.append(str(exc))
    return report


def _folder(path: str | os.PathLike[str] | None) -> Path:
    return Path(path).expanduser() if path is not None else default_data_dir() / "chroma"


def _file_problems(folder: Path, collection: str) -> list[str]:
    problem = store_files_problem(folder)
    if problem is not None:
        return [f"{folder}: {problem}"]
    sqlite = folder / SQLITE_NAME
    if not sqlite.exists():
        return []  # not created yet
    try:
        with contextlib.closing(sqlite3.connect(f"{sqlite.as_uri()}?mode=ro", uri=True)) as db:
            (verdict,) = db.execute("PRAGMA quick_check").fetchone()
            if verdict != "ok":
                return [f"{sqlite}: the database fails its integrity check ({verdict})"]
            segments = _vector_segments(db, collection)
    except sqlite3.DatabaseError as exc:
        return [f"{sqlite}: the database cannot be read ({exc})"]
    return [p for s in segments for p in _hnsw_problems(folder / s)]


def _vector_segments(db: sqlite3.Connection, collection: str) -> list[str]:
    rows = db.execute(
        "SELECT s.id FROM segments s JOIN collections c ON s.collection = c.id "
        "WHERE c.name = ? AND s.scope = 'VECTOR'",
        (collection,),
    )
    return [str(row[0]) for row in rows]


def _hnsw_problems(segment: Path) -> list[str]:
    if not segment.is_dir():
        return []  # not saved yet (fewer records than the sync threshold); the query checks
    id_map = segment / _HNSW_ID_MAP
    return [
        f"{segment / name}: missing or empty"
        for name in _HNSW_FILES
        if not (segment / name).is_file() or (segment / name).stat().st_size == 0
    ] + ([f"{id_map}: empty"] if id_map.is_file() and id_map.stat().st_size == 0 else [])


def _check_reach(found: Any, ref: StoreRef, report: HealthReport) -> None:
    """Count the records, then ask one query for all of them: each must be reached."""
    report.count = count = int(guarded(found.count, ref))
    if count == 0:
        report.reachable = 0
        return
    sample = guarded(lambda: found.get(limit=1, include=["embeddings"]), ref)
    vector = sample["embeddings"][0]

    result = guarded(
        lambda: found.query(query_embeddings=[vector], n_results=count, include=[]), ref
    )
    report.reachable = len(result["ids"][0])
    if report.reachable < count:
        report.problems.append(str(unreachable(ref, found.name, count, report.reachable)))


def discard_collection(
    collection: str,
    path: str | os.PathLike[str] | None = None,
    *,
    host: str | None = None,
    port: int | None = None,
    lock_timeout: float = 0.0,
) -> str:
    """Delete a collection so that it can be built again, even from a damaged store.

    An embedded store too damaged to open is moved aside to `PATH.damaged-TIMESTAMP`; a
    healthy one loses only this collection and its index files. Returns what was done.
    """
    if host is not None or port is not None:
        chroma = client_for(None, None, host, port)
        _delete(chroma, collection)
        return f"deleted collection {collection!r} on the server at {host}:{port}"
    folder = _folder(path)
    with write_lock(folder, lock_timeout):
        if not _file_problems(folder, collection):
            try:
                return _delete_embedded(folder, collection)
            except IndexDamagedError:
                pass  # the store cannot be opened or changed: move all of it aside
        return _move_aside(folder)


def _delete_embedded(folder: Path, collection: str) -> str:
    chroma = client_for(None, folder, None, None)
    segments = _segments_of(folder, collection)
    _delete(chroma, collection)
    for segment in segments:  # Chroma 1.5 leaves a deleted collection's HNSW folder behind
        shutil.rmtree(folder / segment, ignore_errors=True)
    return f"deleted collection {collection!r} from {folder}"


def _segments_of(folder: Path, collection: str) -> list[str]:
    sqlite = folder / SQLITE_NAME
    if not sqlite.exists():
        return []
    with contextlib.closing(sqlite3.connect(f"{sqlite.as_uri()}?mode=ro", uri=True)) as db:
        return _vector_segments(db, collection)


def _delete(chroma: ClientAPI, collection: str) -> None:
    from chromadb.errors import NotFoundError

    with contextlib.suppress(NotFoundError, ValueError):
        guarded(lambda: chroma.delete_collection(collection), StoreRef.of(chroma))


def _move_aside(folder: Path) -> str:
    forget_client(folder)
    stamp = time.strftime("%Y%m%d-%H%M%S", time.gmtime())
    target = folder.with_name(f"{folder.name}.damaged-{stamp}")
    folder.rename(target)
    folder.mkdir()
    # A warning: the store's other collections are in the moved copy now.
    logger.warning("moved the damaged Chroma store %s aside to %s", folder, target)
    return f"moved the damaged store {folder} to {target}"
