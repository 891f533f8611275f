"""Folder sync: the plan (new, changed, unchanged or gone files, from stat calls only) and the run.

Record ids for folder files are derived from the absolute path (`file:` + the path's
SHA-256), so two identical files at different paths are two records, a file keeps its id
while it changes, and a rename is a new id whose vector is reused by content hash.
"""

from __future__ import annotations

import fnmatch
import hashlib
import os
import sys
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from clip_multimodal.images import IMAGE_PATTERNS, SourceKind, scanned_file
from clip_multimodal.index._ingest import CallState, Job
from clip_multimodal.index._records import IndexReport, Metadata

if TYPE_CHECKING:
    from clip_multimodal.index._chroma import LockedCollection

__all__ = [
    "DEFAULT_PATTERNS",
    "FileStat",
    "SyncPlan",
    "file_id",
    "plan_sync",
    "scan_folder",
    "sync_folder",
]

Progress = Callable[[int, int], None]
Advance = Callable[[int], None]
#: Runs jobs into a report (`ImageIndex._ingest`), advancing the progress as chunks finish.
Ingest = Callable[[Sequence[Job], IndexReport, Advance | None], CallState]

DEFAULT_PATTERNS = IMAGE_PATTERNS  # the image extensions the query rule also knows
_PAGE = 10_000  # stored records fetched per call when planning a sync
_STAT_KEYS = ("mtime_ns", "size")  # what the plan compares with a file's stat


@dataclass(frozen=True)
class FileStat:
    uri: str
    mtime_ns: int
    size: int
    #: the walk's stat: the reader classifies and opens the file without another
    stat: os.stat_result | None = field(default=None, compare=False, repr=False)


@dataclass
class SyncPlan:
    """The outcome of comparing a folder with the records it owns."""

    unchanged: list[FileStat] = field(default_factory=list)
    todo: list[FileStat] = field(default_factory=list)  # new or changed: read and hash these
    gone: list[str] = field(default_factory=list)  # ids of records whose file no longer exists


def file_id(uri: str) -> str:
    """The record id of a folder file: stable per absolute path, fixed length."""
    return "file:" + hashlib.sha256(uri.encode("utf-8", "surrogatepass")).hexdigest()


def scan_folder(root: Path, recursive: bool, patterns: Sequence[str]) -> list[FileStat]:
    """Every matching file under root, with (mtime, size) from the directory walk's stat."""
    lowered = tuple(p.lower() for p in patterns)
    found = []
    for entry in _walk(str(root), recursive):
        if not _matches(entry.name.lower(), lowered):
            continue
        try:
            stat = entry.stat()
        except OSError:
            continue  # deleted (or made unreadable) since the listing: not in the folder now
        found.append(FileStat(entry.path, stat.st_mtime_ns, stat.st_size, stat))
    found.sort(key=lambda f: f.uri)  # a stable order: progress and crash-resume are repeatable
    return found


def _walk(top: str, recursive: bool) -> Iterator[os.DirEntry[str]]:
    try:
        with os.scandir(top) as entries:
            subdirs = []
            for entry in entries:
                if entry.is_file():
                    yield entry
                elif recursive and entry.is_dir(follow_symlinks=False):
                    subdirs.append(entry.path)
    except OSError:
        return  # an unreadable folder holds nothing we can index
    for sub in subdirs:
        yield from _walk(sub, recursive)


def _matches(name: str, patterns: tuple[str, ...]) -> bool:
    return any(fnmatch.fnmatchcase(name, p) for p in patterns)


def plan_sync(
    files: Sequence[FileStat],
    stored: Mapping[str, tuple[str, Mapping[str, Any]]],
    verify: bool = False,
) -> SyncPlan:
    """Compare scanned files with stored records (`uri -> (id, metadata)`), reading nothing.

    With `verify`, no file counts as unchanged from its stat: each is read and hashed, so a
    file rewritten with the same size and mtime is caught by its content hash.
    """
    plan = SyncPlan()
    seen: set[str] = set()
    for f in files:
        seen.add(f.uri)
        record = stored.get(f.uri)
        if record is not None and not verify and _same_stat(record[1], f):
            plan.unchanged.append(f)
        else:
            plan.todo.append(f)
    for uri, (id_, _) in stored.items():
        # A file outside this scan (other patterns, recursive=False) still owns its record;
        # a path that is no longer a file (deleted, or replaced by a folder) does not.
        if uri not in seen and not os.path.isfile(uri):
            plan.gone.append(id_)
    return plan


def _stored_stats(collection: LockedCollection, folder: str) -> dict[str, tuple[str, Metadata]]:
    """uri -> (id, the stat keys) of the folder's records, fetched a page at a time and kept
    small, so a large folder's records never sit in memory whole."""
    stored: dict[str, tuple[str, Metadata]] = {}
    offset = 0
    while True:
        page = collection.records(where={"folder": folder}, texts=False, limit=_PAGE, offset=offset)
        for r in page:
            if r.uri is not None:
                stat = {k: r.metadata[k] for k in _STAT_KEYS if k in r.metadata}
                stored[r.uri] = (r.id, stat)
        if len(page) < _PAGE:
            return stored
        offset += _PAGE


def _kind(f: FileStat) -> SourceKind | None:
    return None if f.stat is None else scanned_file(f.uri, f.stat)


def _same_stat(meta: Mapping[str, Any], f: FileStat) -> bool:
    return meta.get("mtime_ns") == f.mtime_ns and meta.get("size") == f.size


def sync_folder(
    path: str | os.PathLike[str],
    recursive: bool,
    patterns: Sequence[str],
    verify: bool,
    collection: LockedCollection,
    ingest: Ingest,
    progress: bool | None,
    callback: Progress | None,
) -> IndexReport:
    """`ImageIndex.index_folder`: scan, plan, ingest what changed, delete what is gone."""
    root = Path(path).expanduser().absolute()
    if not root.is_dir():
        raise NotADirectoryError(f"cannot index {root}: not a folder; pass a folder path")
    folder = str(root)
    files = scan_folder(root, recursive, patterns)
    stored = _stored_stats(collection, folder)
    plan = plan_sync(files, stored, verify)
    tag: Metadata = {"folder": folder}
    report = IndexReport(unchanged=len(plan.unchanged))
    jobs = [
        Job(i, f.uri, file_id(f.uri), extra=tag, from_folder=True, kind=_kind(f))
        for i, f in enumerate(plan.todo)
    ]
    report.ids = [None] * len(jobs)
    with _progress(len(files), progress, callback) as advance:
        advance(len(plan.unchanged))
        state = ingest(jobs, report, advance)
    stored_ids = {id_ for id_, _ in stored.values()}
    # A file that vanished or stopped being an image must not stay searchable.
    gone = plan.gone + [i for i in state.vanished_ids + state.failed_ids if i in stored_ids]
    if gone:
        # After the writes: a renamed file's record was rewritten from the old vector first.
        collection.delete(ids=gone)
        report.removed = len(gone)
    report.ids = []
    return report


@contextmanager
def _progress(total: int, show: bool | None, callback: Progress | None) -> Iterator[Advance]:
    """An `advance(n)` function that drives a tqdm bar and/or the caller's callback."""
    if show is None:
        show = sys.stderr.isatty()
    bar = None
    if show:
        from tqdm import tqdm

        bar = tqdm(total=total, unit="img", desc="indexing", file=sys.stderr)
    done = 0

    def advance(n: int, _total: int = total) -> None:
        nonlocal done
        done += n
        if bar is not None:
            bar.update(n)
        if callback is not None:
            callback(done, _total)

    try:
        yield advance
    finally:
        if bar is not None:
            bar.close()
