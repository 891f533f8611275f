"""Where an index lives: the data directory, the Chroma client, and the checked collection."""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from clip_multimodal.errors import (
    IncompatibleIndexError,
    IndexNotFoundError,
    IndexUnavailableError,
)
from clip_multimodal.index._chroma import SPACES
from clip_multimodal.index._health import (
    StoreRef,
    damaged,
    forget_client,
    guarded,
    store_files_problem,
)
from clip_multimodal.index._lock import open_lock
from clip_multimodal.index._names import check_collection_name

if TYPE_CHECKING:
    from chromadb.api import ClientAPI
    from chromadb.api.models.Collection import Collection

    from clip_multimodal.types import Encoder

__all__ = [
    "DEFAULT_SERVER_TIMEOUT_S",
    "DIM_KEY",
    "MODEL_ID_KEY",
    "CollectionInfo",
    "check_readable",
    "client_for",
    "collection_space",
    "default_data_dir",
    "describe_collection",
    "get_existing",
    "make_client",
    "max_batch_size",
    "open_collection",
    "open_existing",
]

MODEL_ID_KEY = "clip_multimodal:model_id"
DIM_KEY = "clip_multimodal:dim"
_APP = "clip-multimodal"
#: How long one call to a Chroma server may take (chromadb itself waits forever).
DEFAULT_SERVER_TIMEOUT_S = 120.0


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


def _settings(identifier: str) -> Any:
    """Settings that match any client this process already opened on the same Chroma.

    Chroma keeps one system per path (and one for all in-memory clients) and refuses a
    second client there with other settings, so we reuse the settings of the client the
    user opened first, else Chroma's defaults (what `chromadb.PersistentClient(path)` uses).
    The defaults send nothing: Chroma 1.5's product telemetry client captures no events.
    """
    from chromadb.api.shared_system_client import SharedSystemClient
    from chromadb.config import Settings

    existing = getattr(SharedSystemClient, "_identifier_to_system", {}).get(identifier)
    return Settings() if existing is None else existing.settings.model_copy()


def make_client(
    path: str | os.PathLike[str] | None,
    host: str | None,
    port: int | None,
    timeout: float | None = None,
) -> ClientAPI:
    """An embedded client at `path` (default: the data dir), or an HTTP client at host:port
    whose calls give up after `timeout` seconds (default: DEFAULT_SERVER_TIMEOUT_S).

    Raises:
        IndexDamagedError: the embedded store's files are damaged.
        IndexUnavailableError: the server cannot be reached or does not answer in time.
    """
    import chromadb

    if host is None and port is None:
        where = Path(path).expanduser() if path is not None else default_data_dir() / "chroma"
        ref = StoreRef(path=where)
        problem = store_files_problem(where)
        if problem is not None:  # before Chroma replaces the lost database with an empty one
            raise damaged(ref, problem)
        with open_lock(where):  # two processes creating one store race in Chroma's setup
            return guarded(lambda: _persistent_client(where), ref)
    if path is not None:
        raise ValueError("pass either path (embedded Chroma) or host/port (a server), not both")
    host, port = host or "localhost", port or 8000
    limit = DEFAULT_SERVER_TIMEOUT_S if timeout is None else float(timeout)
    try:  # the client checks the server once, here; a closed port fails in milliseconds
        _heartbeat(host, port, limit)
        client = chromadb.HttpClient(host=host, port=port)  # HTTP clients share no system
    except Exception as exc:
        raise IndexUnavailableError(
            f"cannot reach a Chroma server at {host}:{port} within {limit:g} s ({exc!r}). "
            f"Start one with `chroma run --path DIR --port {port}`, or leave out host/port to "
            "use an embedded index on disk."
        ) from exc
    _set_timeout(client, limit)
    return client


def _persistent_client(where: Path) -> ClientAPI:
    import chromadb

    try:
        return chromadb.PersistentClient(path=str(where), settings=_settings(str(where)))
    except Exception:
        forget_client(where)  # Chroma keeps the failed store cached: the retry must reopen
        raise


def _heartbeat(host: str, port: int, timeout: float) -> None:
    """Ask the server's heartbeat with a time limit (chromadb's own check has none)."""
    import httpx

    netloc = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    httpx.get(f"http://{netloc}/api/v2/heartbeat", timeout=timeout).raise_for_status()


def _set_timeout(client: ClientAPI, timeout: float) -> None:
    # chromadb 1.5 builds its httpx session with timeout=None and has no setting for it, so a
    # stuck server hangs every call; the session is the one place to set it.
    import httpx

    session = getattr(getattr(client, "_server", None), "_session", None)
    if isinstance(session, httpx.Client):
        session.timeout = httpx.Timeout(timeout)


def client_for(
    client: ClientAPI | None,
    path: str | os.PathLike[str] | None,
    host: str | None,
    port: int | None,
    timeout: float | None = None,
) -> ClientAPI:
    """The client given, or one made from path or host/port (never both kinds of location)."""
    if client is None:
        return make_client(path, host, port, timeout)
    if path is not None or host is not None or port is not None:
        raise ValueError("pass client, or path, or host/port: not several of them")
    return client


def max_batch_size(client: ClientAPI) -> int:
    """The most records one Chroma write may carry."""
    return max(1, int(client.get_max_batch_size()))


def open_collection(client: ClientAPI, name: str, encoder: Encoder) -> Collection:
    """Get or create the collection and check that it was built with this encoder.

    Raises:
        IncompatibleIndexError: the collection records another model or dimension, is not
            cosine, or holds records from outside clip-multimodal. Nothing is written then.
    """
    model_id, dim = encoder.model_id, int(encoder.dim)
    collection = guarded(  # a second process creating it at the same time: retried
        lambda: client.get_or_create_collection(
            name,
            embedding_function=None,
            configuration={"hnsw": {"space": "cosine"}},
            metadata={MODEL_ID_KEY: model_id, DIM_KEY: dim},
        ),
        StoreRef.of(client),
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
    space = collection_space(collection, default="cosine")
    if space != "cosine":
        raise IncompatibleIndexError(
            f"collection {name!r} uses the {space!r} distance; CLIP scores need 'cosine'. "
            "Use a new collection name for this index."
        )


def collection_space(collection: Collection, default: str) -> str:
    """The collection's distance space: its configuration, else the legacy `hnsw:space`
    metadata, else `default`.

    Read from the raw configuration JSON: `collection.configuration` rebuilds the recorded
    embedding function, which fails for functions this process has not registered.
    """
    config: Mapping[str, Any] = collection.configuration_json or {}
    index_config = config.get("hnsw") or config.get("spann") or {}
    space = index_config.get("space") or (collection.metadata or {}).get("hnsw:space")
    return str(space or default)


def get_existing(client: ClientAPI, name: str) -> Collection:
    """The named collection as it is, without its embedding function; never creates one.

    Raises:
        IndexNotFoundError: there is no collection of that name.
    """
    from chromadb.errors import NotFoundError

    try:
        # No embedding function: the index only queries by vector, and rebuilding a recorded
        # function could load a model or need a package this process lacks.
        return guarded(
            lambda: client.get_collection(name, embedding_function=None), StoreRef.of(client)
        )
    except NotFoundError as exc:
        raise IndexNotFoundError(
            f"there is no collection named {name!r} in this Chroma; check the name and the "
            "location (path, or host and port), or build it first"
        ) from exc


def open_existing(
    encoder: Encoder,
    collection: str | Collection,
    path: str | os.PathLike[str] | None,
    client: ClientAPI | None,
    host: str | None,
    port: int | None,
) -> tuple[ClientAPI | None, Collection, str]:
    """A collection to read, whoever wrote it: (its client, or None for a Collection object
    given, which brings its own; the collection; its distance space), checked by
    `check_readable`."""
    chroma: ClientAPI | None = None
    if isinstance(collection, str):
        check_collection_name(collection)
        chroma = client_for(client, path, host, port)
        found = get_existing(chroma, collection)
    else:
        if client is not None or path is not None or host is not None or port is not None:
            raise ValueError(
                "a Chroma Collection brings its own client: pass no path, client, host or port"
            )
        found = collection
    return chroma, found, check_readable(found, encoder)


def check_readable(collection: Collection, encoder: Encoder) -> str:
    """Check that the encoder can search a collection opened read-only; return its space.

    A collection that records a model must record this encoder's. One that records none (made
    by Chroma's own embedding function or another tool) must hold vectors of the encoder's
    dimension; its space defaults to Chroma's `l2` when none is recorded.

    Raises:
        IncompatibleIndexError: another model, another dimension, or an unknown space.
    """
    name, model_id, dim = collection.name, encoder.model_id, int(encoder.dim)
    meta = collection.metadata or {}
    built_id = meta.get(MODEL_ID_KEY)
    if built_id is not None and built_id != model_id:
        raise IncompatibleIndexError(
            f"collection {name!r} was built with model {built_id} (dim {meta.get(DIM_KEY)}); "
            f"you offered model {model_id} (dim {dim}). Read it with the model that wrote it."
        )
    stored = None if built_id is not None else _stored_dim(collection)
    if stored is not None and stored != dim:
        raise IncompatibleIndexError(
            f"collection {name!r} holds vectors of dim {stored}; model {model_id} makes dim "
            f"{dim}. Read it with the model that wrote it."
        )
    space = collection_space(collection, default="l2" if built_id is None else "cosine")
    if space not in SPACES:
        raise IncompatibleIndexError(
            f"collection {name!r} uses the {space!r} distance, which clip-multimodal cannot "
            f"turn into cosine similarity (it knows {', '.join(SPACES)})"
        )
    return space


def _stored_dim(collection: Collection) -> int | None:
    """The dimension of one stored vector; None for an empty collection."""
    sample = collection.get(limit=1, include=["embeddings"])
    embeddings = sample.get("embeddings")
    if embeddings is None or len(embeddings) == 0:
        return None
    return len(embeddings[0])


@dataclass(frozen=True)
class CollectionInfo:
    """What a Chroma collection holds, as `describe_collection` reports it.

    Attributes:
        name: the collection name.
        count: how many records it holds.
        model_id: the model clip-multimodal recorded on it; None for a collection that
            clip-multimodal did not write.
        dim: the recorded dimension, else a stored vector's; None for an empty foreign one.
        space: the distance space (cosine, ip or l2).
    """

    name: str
    count: int
    model_id: str | None
    dim: int | None
    space: str


def describe_collection(
    collection: str,
    path: str | os.PathLike[str] | None = None,
    *,
    client: ClientAPI | None = None,
    host: str | None = None,
    port: int | None = None,
) -> CollectionInfo | None:
    """Describe a collection without opening it as an index (no model needed, nothing written).

    Args:
        collection: the collection name.
        path: an embedded Chroma's folder (default: `default_data_dir()/chroma`).
        client: an existing Chroma client to use instead.
        host: a Chroma server's host.
        port: the server's port.

    Returns:
        A CollectionInfo, or None when there is no collection of that name.

    Raises:
        IndexUnavailableError: the Chroma server at host:port cannot be reached.
    """
    client = client_for(client, path, host, port)
    try:
        found = get_existing(client, collection)
    except IndexNotFoundError:
        return None
    meta = found.metadata or {}
    model_id = meta.get(MODEL_ID_KEY)
    recorded_dim = meta.get(DIM_KEY)
    dim = int(recorded_dim) if isinstance(recorded_dim, int) else _stored_dim(found)
    space = collection_space(found, default="l2" if model_id is None else "cosine")
    count = guarded(found.count, StoreRef.of(client))
    return CollectionInfo(collection, count, str(model_id) if model_id else None, dim, space)
