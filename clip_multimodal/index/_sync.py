"""Folder sync planning: which files are new, changed, unchanged or gone, from stat calls only.

Record ids for folder files are derived from the absolute path (`file:` + the path's
SHA-256), so two identical files at different paths are two records, a file keeps its id
while it changes, and a rename is a new id whose vector is reused by content hash.
"""

from __future__ import annotations

import fnmatch
import hashlib
import os
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from clip_multimodal.images import IMAGE_PATTERNS

__all__ = ["DEFAULT_PATTERNS", "FileStat", "SyncPlan", "file_id", "plan_sync", "scan_folder"]

DEFAULT_PATTERNS = IMAGE_PATTERNS  # the image extensions the query rule also knows


@dataclass(frozen=True)
class FileStat:
    uri: str
    mtime_ns: int
    size: int


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
        found.append(FileStat(entry.path, stat.st_mtime_ns, stat.st_size))
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


def _same_stat(meta: Mapping[str, Any], f: FileStat) -> bool:
    return meta.get("mtime_ns") == f.mtime_ns and meta.get("size") == f.size
