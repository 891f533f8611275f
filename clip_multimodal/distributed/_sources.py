"""What a Ray job indexes: a folder, or a text or Parquet file listing paths and URLs.

The plan is the index's own (`plan_folder`, `plan_files`): a listed file is skipped when its
size and mtime match its record. A list owns the records it wrote (tagged with the list
file's absolute path), so an entry dropped from the list is deleted; a listed file that
cannot be read is a failure, not a silent deletion. URLs have no stat: each is read and
hashed again, and embedded only when its content changed.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from clip_multimodal.index._manifest import Manifest
from clip_multimodal.index._sync import FileStat, FolderSync, plan_files, plan_folder

if TYPE_CHECKING:
    from clip_multimodal.index._chroma import LockedCollection

__all__ = ["list_entries", "plan_source"]

_URL_PREFIXES = ("http://", "https://")
_NO_STAT = -1  # never equal to a record's mtime_ns or size: the entry is read


def plan_source(
    source: str | os.PathLike[str],
    collection: LockedCollection,
    recursive: bool,
    patterns: Sequence[str],
    verify: bool,
) -> FolderSync:
    """The sync plan of a folder (as `index_folder` makes it) or of a list file.

    Raises:
        FileNotFoundError: `source` does not exist.
        ValueError: a Parquet list has no string column of paths.
    """
    path = Path(source).expanduser().absolute()
    if path.is_dir():
        # The manifest's rows help the plan; the Ray run does not write them back.
        return plan_folder(path, recursive, patterns, verify, collection, Manifest.of(collection))
    if not path.is_file():
        raise FileNotFoundError(
            f"cannot index {path}: no such folder or file; pass a folder of images, or a "
            ".txt or .parquet file listing image paths or URLs"
        )
    uris = list(dict.fromkeys(list_entries(path)))  # a repeated entry is one record
    sync = plan_files(str(path), [_stat(u) for u in uris], collection, verify)
    listed = set(uris)
    # A list names every file it owns: an entry dropped from it is gone, whatever the disk says.
    sync.plan.gone = [id_ for uri, (id_, _) in sync.stored.items() if uri not in listed]
    sync.from_folder = False
    return sync


def list_entries(path: Path) -> list[str]:
    """The URLs and absolute paths a list file names (relative paths: to the list's folder)."""
    raw = _parquet_entries(path) if path.suffix.lower() == ".parquet" else _text_entries(path)
    return [_absolute(entry, path.parent) for entry in raw]


def _text_entries(path: Path) -> list[str]:
    lines = (line.strip() for line in path.read_text(encoding="utf-8").splitlines())
    return [line for line in lines if line and not line.startswith("#")]


def _parquet_entries(path: Path) -> list[str]:
    import pyarrow as pa
    import pyarrow.parquet as pq

    table = pq.read_table(path)
    names = [n for n in ("uri", "path", "url") if n in table.column_names]
    names += [f.name for f in table.schema if pa.types.is_string(f.type)]
    if not names:
        raise ValueError(
            f"cannot index {path}: it has no string column of image paths or URLs "
            f"(columns: {table.column_names}); name one 'uri' or 'path'"
        )
    return [str(v) for v in table.column(names[0]).to_pylist() if v]


def _absolute(entry: str, base: Path) -> str:
    if entry.startswith(_URL_PREFIXES):
        return entry
    return str((base / Path(entry).expanduser()).absolute())


def _stat(uri: str) -> FileStat:
    if not uri.startswith(_URL_PREFIXES):
        try:
            stat = os.stat(uri)
            return FileStat(uri, stat.st_mtime_ns, stat.st_size)
        except OSError:
            pass  # listed but missing: read, so that the report names it
    return FileStat(uri, _NO_STAT, _NO_STAT)
