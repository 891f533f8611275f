"""What the last sync of each folder stored: the stat keys of its records, beside the store.

Planning a sync compares each file's stat with its record's. Chroma reads a record's metadata
in about 75 µs (it reads every key, and an image record has twelve), so a folder of 100,000
unchanged files took 8 s to plan. The manifest keeps (mtime_ns, size) per record id, as the
last sync of the folder stored them, in a SQLite file in the embedded store's folder; the plan
then asks Chroma only which ids the folder holds (no metadata) and reads the metadata of the
few records the manifest does not know.

It is a cache of the store, never the truth:
- rows of ids that are no longer stored are ignored, and stored ids without a row are read
  from Chroma;
- a folder is marked dirty when its sync starts, and its rows are trusted again only once a
  sync that was the store's only writer from start to end (`_lock.sole_writer`) saves them,
  so a crashed or shared sync leaves none to trust;
- rows are per collection id: a rebuilt or re-created collection starts without any.
A server has none: other machines write there, so each sync reads the records.
"""

from __future__ import annotations

import json
import logging
import sqlite3
from collections.abc import Mapping
from contextlib import closing
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from clip_multimodal.index._chroma import LockedCollection

__all__ = ["MANIFEST_NAME", "Manifest", "Stat"]

MANIFEST_NAME = "clip-multimodal-sync.sqlite3"
#: (mtime_ns, size): what the sync plan compares with a file's stat
Stat = tuple[int, int]

_log = logging.getLogger(__name__)
# One row per folder, its records' stats in one JSON value (three parallel lists): 100,000 of
# them are read or written in a tenth of a second, where a row each took 0.7 s to insert. A
# folder whose sync is under way is marked in `dirty`; its rows are not trusted until the
# sync saves them, and an unchanged folder's rows need not be written again.
_SCHEMA = (
    "CREATE TABLE IF NOT EXISTS folders (collection TEXT NOT NULL, folder TEXT NOT NULL, "
    "records TEXT NOT NULL, PRIMARY KEY (collection, folder))",
    "CREATE TABLE IF NOT EXISTS dirty (collection TEXT NOT NULL, folder TEXT NOT NULL, "
    "PRIMARY KEY (collection, folder))",
)
_WHERE = "WHERE collection = ? AND folder = ?"


class Manifest:
    """The stat keys of one collection's folder records, kept in `file`.

    A failure to read or write it (a read-only folder, a damaged file) is logged and the sync
    goes on as without it: the store holds the same facts, only slower to read.
    """

    def __init__(self, file: Path, collection_id: str) -> None:
        self.file = file
        self.collection_id = collection_id
        self._taken: dict[str, dict[str, Stat]] = {}

    @classmethod
    def of(cls, collection: LockedCollection) -> Manifest | None:
        """The manifest of an embedded store's collection; None for a server or in memory."""
        folder = collection.ref.path
        if folder is None:
            return None
        return cls(folder / MANIFEST_NAME, str(collection.collection.id))

    def take(self, folder: str) -> dict[str, Stat]:
        """The folder's rows (id -> stat), which stop being trusted until `save`: none if a
        sync of the folder began and never saved (it crashed, or shared the store)."""
        key = (self.collection_id, folder)
        try:
            with closing(self._connect()) as db, db:
                dirty = db.execute(f"SELECT 1 FROM dirty {_WHERE}", key).fetchone()
                found = db.execute(f"SELECT records FROM folders {_WHERE}", key).fetchone()
                db.execute("INSERT OR IGNORE INTO dirty VALUES (?, ?)", key)
            rows = {} if dirty or not found else _decode(found[0])
        except (sqlite3.Error, OSError, ValueError, TypeError, KeyError) as exc:
            _log.warning("cannot read the sync manifest %s (%s); reading the store", self.file, exc)
            rows = {}
        self._taken[folder] = rows
        return dict(rows)

    def save(self, folder: str, rows: Mapping[str, Stat]) -> None:
        """Make `rows` the folder's trusted rows (written only if they changed)."""
        key = (self.collection_id, folder)
        same = self._taken.get(folder) == rows and bool(rows)
        try:
            with closing(self._connect()) as db, db:
                if not same:
                    value = (*key, _encode(rows))
                    db.execute("INSERT OR REPLACE INTO folders VALUES (?, ?, ?)", value)
                db.execute(f"DELETE FROM dirty {_WHERE}", key)
        except (sqlite3.Error, OSError) as exc:
            _log.warning("cannot write the sync manifest %s (%s)", self.file, exc)

    def _connect(self) -> sqlite3.Connection:
        db = sqlite3.connect(self.file, timeout=30)
        for statement in _SCHEMA:
            db.execute(statement)
        return db


def _encode(rows: Mapping[str, Stat]) -> str:
    columns = {"ids": list(rows), "mtime_ns": [s[0] for s in rows.values()]}
    columns["size"] = [s[1] for s in rows.values()]
    return json.dumps(columns, separators=(",", ":"))


def _decode(value: str) -> dict[str, Stat]:
    columns = json.loads(value)
    stats = zip(columns["mtime_ns"], columns["size"], strict=True)
    return dict(zip(columns["ids"], stats, strict=True))
