"""Where an index lives: the data directory, the Chroma client, and the checked collection."""

from __future__ import annotations

import os
import sys
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any

from clip_multimodal.errors import IncompatibleIndexError, IndexUnavailableError

if TYPE_CHECKING:
    from chromadb.api import ClientAPI
    from chromadb.api.models.Collection import Collection

    from clip_multimodal.types import Encoder

__all__ = [
    "DIM_KEY",
    "MODEL_ID_KEY",
    "LockedCollection",
    "default_data_dir",
    "make_client",
    "open_collection",
]

MODEL_ID_KEY = "clip_multimodal:model_id"
DIM_KEY = "clip_multimodal:dim"
_APP = "clip-multimodal"


def default_data_dir() -> Path:
    """Where clip-multimodal keeps its data unless told otherwise.

    `CLIP_MULTIMODAL_DATA_DIR` wins; otherwise the platform's user data folder
    (`$XDG_DATA_HOME/clip-multimodal` or `~/.local/share/clip-multimodal` on Linux,
    `~/Library/Application Support/clip-multimodal` on macOS, `%LOCALAPPDATA%` on Windows).
    """
    env = os.environ.get("CLIP_MULTIMODAL_DATA_DIR")
    if env:
        return Path(env).expanduser()
    if sys.platform == "win32":
        base = os.environ.get("LOCALAPPDATA") or str(Path.home() / "AppData" / "Local")
        return Path(base) / _APP
    if sys.platform == "darwin":
        return Path.home() / "Library" / "Application Support" / _APP
    xdg = os.environ.get("XDG_DATA_HOME")
    return Path(xdg).expanduser() / _APP if xdg else Path.home() / ".local" / "share" / _APP


def _settings() -> Any:
    from chromadb.config import Settings

    # No telemetry: an index must work offline and never phone home.
    return Settings(anonymized_telemetry=False)


def make_client(
    path: str | os.PathLike[str] | None, host: str | None, port: int | None
) -> ClientAPI:
    """An embedded client at `path` (default: the data dir), or an HTTP client at host:port."""
    import chromadb

    if host is None and port is None:
        where = Path(path).expanduser() if path is not None else default_data_dir() / "chroma"
        where.mkdir(parents=True, exist_ok=True)
        return chromadb.PersistentClient(path=str(where), settings=_settings())
    if path is not None:
        raise ValueError("pass either path (embedded Chroma) or host/port (a server), not both")
    host, port = host or "localhost", port or 8000
    try:  # the client checks the server once, here; a closed port fails in milliseconds
        return chromadb.HttpClient(host=host, port=port, settings=_settings())
    except Exception as exc:
        raise IndexUnavailableError(
            f"cannot reach a Chroma server at {host}:{port} ({exc}). Start one with "
            f"`chroma run --path DIR --port {port}`, or leave out host/port to use an "
            "embedded index on disk."
        ) from exc


def open_collection(client: ClientAPI, name: str, encoder: Encoder) -> Collection:
    """Get or create the collection and check that it was built with this encoder.

    Raises:
        IncompatibleIndexError: the collection records another model or dimension, is not
            cosine, or holds records from outside clip-multimodal. Nothing is written then.
    """
    model_id, dim = encoder.model_id, int(encoder.dim)
    collection = client.get_or_create_collection(
        name,
        embedding_function=None,
        configuration={"hnsw": {"space": "cosine"}},
        metadata={MODEL_ID_KEY: model_id, DIM_KEY: dim},
    )
    meta = collection.metadata or {}
    if MODEL_ID_KEY not in meta:
        return _adopt(collection, name, model_id, dim)
    built_id, built_dim = meta[MODEL_ID_KEY], meta.get(DIM_KEY)
    if built_id != model_id or built_dim != dim:
        raise IncompatibleIndexError(
            f"collection {name!r} was built with model {built_id} (dim {built_dim}); you "
            f"offered model {model_id} (dim {dim}). Use the same model or a new collection name."
        )
    _check_space(collection, name)
    return collection


def _adopt(collection: Collection, name: str, model_id: str, dim: int) -> Collection:
    """A collection made elsewhere: take it over only if it is empty and cosine."""
    if collection.count() > 0:
        raise IncompatibleIndexError(
            f"collection {name!r} holds records that clip-multimodal did not write (it records "
            "no model). Use a new collection name for this index."
        )
    _check_space(collection, name)
    meta = dict(collection.metadata or {})
    meta.update({MODEL_ID_KEY: model_id, DIM_KEY: dim})
    collection.modify(metadata=meta)
    return collection


def _check_space(collection: Collection, name: str) -> None:
    config = collection.configuration or {}
    index_config = config.get("hnsw") or config.get("spann") or {}
    space = index_config.get("space", "cosine")
    if space != "cosine":
        raise IncompatibleIndexError(
            f"collection {name!r} uses the {space!r} distance; CLIP scores need 'cosine'. "
            "Use a new collection name for this index."
        )


class LockedCollection:
    """A collection whose every call holds one lock.

    Chroma 1.5's local HNSW segment is not safe under concurrent reads and writes (a read
    racing the first flush fails with "Error creating hnsw segment reader: Nothing found on
    disk", chroma-core/chroma#4212), so the index serializes its own calls. Calls are
    milliseconds; embedding, the slow part, runs outside the lock.
    """

    def __init__(self, collection: Collection) -> None:
        self.collection = collection
        self.lock = threading.RLock()

    def get(self, **kwargs: Any) -> Any:
        with self.lock:
            return self.collection.get(**kwargs)

    def query(self, **kwargs: Any) -> Any:
        with self.lock:
            return self.collection.query(**kwargs)

    def add(self, **kwargs: Any) -> None:
        with self.lock:
            self.collection.add(**kwargs)

    def upsert(self, **kwargs: Any) -> None:
        with self.lock:
            self.collection.upsert(**kwargs)

    def update(self, **kwargs: Any) -> None:
        with self.lock:
            self.collection.update(**kwargs)

    def delete(self, **kwargs: Any) -> None:
        with self.lock:
            self.collection.delete(**kwargs)

    def count(self) -> int:
        with self.lock:
            return int(self.collection.count())
