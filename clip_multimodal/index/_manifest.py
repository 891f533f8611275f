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
- a folder's rows are dropped when its sync starts and written again only by a sync that was
  the store's only writer from start to end (`_lock.sole_writer`), so a crashed or shared
  sync leaves none behind;
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
# One row per folder, its records' stats in one JSON value: 100,000 of them are read or
# written in a tenth of a second, where a row each took 0.7 s to insert.
_SCHEMA = (
    "CREATE TABLE IF NOT EXISTS folders (collection TEXT NOT NULL, folder TEXT NOT NULL, "
    "records TEXT NOT NULL, PRIMARY KEY (collection, folder))"
)


class Manifest:
    """The stat keys of one collection's folder records, kept in `file`.

    A failure to read or write it (a read-only folder, a damaged file) is logged and the sync
    goes on as without it: the store holds the same facts, only slower to read.
    """

    def __init__(self, file: Path, collection_id: str) -> None:
        self.file = file
        self.collection_id = collection_id

    @classmethod
    def of(cls, collection: LockedCollection) -> Manifest | None:
        """The manifest of an embedded store's collection; None for a server or in memory."""
        folder = collection.ref.path
        if folder is None:
            return None
        return cls(folder / MANIFEST_NAME, str(collection.collection.id))

    def take(self, folder: str) -> dict[str, Stat]:
        """The folder's rows (id -> stat), dropped from the file in the same transaction."""
        key = (self.collection_id, folder)
        try:
            with closing(self._connect()) as db, db:
                found = db.execute(
                    "SELECT records FROM folders WHERE collection = ? AND folder = ?", key
                ).fetchone()
                db.execute("DELETE FROM folders WHERE collection = ? AND folder = ?", key)
            rows = json.loads(found[0]) if found else {}
            return {str(id_): (int(stat[0]), int(stat[1])) for id_, stat in rows.items()}
        except (sqlite3.Error, OSError, ValueError, TypeError, IndexError) as exc:
            _log.warning("cannot read the sync manifest %s (%s); reading the store", self.file, exc)
            return {}

    def save(self, folder: str, rows: Mapping[str, Stat]) -> None:
        """Replace the folder's rows."""
        value = json.dumps(rows, separators=(",", ":"))
        try:
            with closing(self._connect()) as db, db:
                db.execute(
                    "INSERT OR REPLACE INTO folders VALUES (?, ?, ?)",
                    (self.collection_id, folder, value),
                )
        except (sqlite3.Error, OSError) as exc:
            _log.warning("cannot write the sync manifest %s (%s)", self.file, exc)

    def _connect(self) -> sqlite3.Connection:
        db = sqlite3.connect(self.file, timeout=30)
        db.execute(_SCHEMA)
        return db
