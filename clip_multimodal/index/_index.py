"""ImageIndex: one Chroma collection of image embeddings, searchable by text or by image."""

from __future__ import annotations

import io
import os
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
from PIL import Image

from clip_multimodal import images
from clip_multimodal.errors import ImageLoadError, ReadOnlyIndexError
from clip_multimodal.index._bulk import IndexWriter
from clip_multimodal.index._health import StoreRef
from clip_multimodal.index._ingest import CallState, Job, WriteBatch, ingest_chunk, lost_writes
from clip_multimodal.index._lock import write_lock, writes
from clip_multimodal.index._names import check_collection_name
from clip_multimodal.index._records import (
    IndexRecord,
    IndexReport,
    Metadata,
    SearchHit,
    hits_from_query,
    merge_metadata,
    uri_of,
)
from clip_multimodal.index._repair import discard_collection
from clip_multimodal.index._search import mmr_select
from clip_multimodal.index._store import (
    DEFAULT_SERVER_TIMEOUT_S,
    LockedCollection,
    check_readable,
    client_for,
    get_existing,
    open_collection,
)
from clip_multimodal.index._sync import DEFAULT_PATTERNS, file_id, plan_sync, scan_folder
from clip_multimodal.index._writer import BackgroundWriter
from clip_multimodal.types import ImageInput

if TYPE_CHECKING:
    from chromadb.api import ClientAPI
    from chromadb.api.models.Collection import Collection

    from clip_multimodal.types import Encoder

__all__ = ["ImageIndex"]

QueryType = Literal["auto", "text", "image"]
Where = Mapping[str, Any]
Progress = Callable[[int, int], None]
Advance = Callable[[int], None]

#: Default chunk bounds: at least 64 images (each chunk pays two store lookups), at most 512
#: (a chunk's images are held in memory as read, before the model decodes them).
_MIN_CHUNK, _MAX_CHUNK = 64, 512


class ImageIndex:
    """One Chroma collection of image embeddings, kept in sync with folders and searched by
    text or by image.

    Records keep the image's URI (a path or URL) and metadata (mime, width, height, size,
    mtime, sha256, modality="image"), never the image bytes. Scores are cosine similarity,
    higher is better. The collection records the encoder's `model_id` and `dim`, and refuses
    another model. One index is safe to use from several threads.

    `ImageIndex(...)` creates the collection or opens one it wrote. To search a collection
    written by another tool (Chroma's own embedding function, LlamaIndex's
    `ChromaVectorStore`), use `ImageIndex.open_read_only(encoder, collection, ...)`: it
    checks the stored vectors' dimension instead of a recorded model, reads the collection's
    distance space to score hits, never changes the collection, and refuses writes with
    `ReadOnlyIndexError`.

    Args:
        encoder: the model, e.g. `CLIPEncoder(...)` (anything implementing `Encoder`).
        collection: the Chroma collection name.
        path: where an embedded Chroma keeps its files (default: `default_data_dir()/chroma`).
        client: an existing Chroma client to use instead.
        host: a Chroma server's host (server mode, through `chromadb.HttpClient`).
        port: the server's port.
        chunk_size: images read and embedded per chunk; by default the encoder's
            `batch_size`, within 64 to 512 (so larger on GPU). Finished chunks are gathered
            into writes of up to 1,024 records or one second of work, written while the next
            chunks embed.
        timeout: seconds a Chroma server call may take (default 120); then
            `IndexUnavailableError`.
        lock_timeout: an embedded store takes one writing process at a time (a lock file in
            its folder); how long a write waits for another process's to finish. The
            default 0 raises `IndexLockedError` at once. Reads never wait.

    Raises:
        IncompatibleIndexError: the collection was built with another model (nothing is
            written).
        IndexUnavailableError: the Chroma server at host:port cannot be reached.
        InvalidCollectionNameError: Chroma would refuse the name (checked first).
        IndexDamagedError: the store's files are damaged (rebuild with `ImageIndex.rebuild`).

    Example:
        >>> index = ImageIndex(CLIPEncoder(), collection="photos")
        >>> index.index_folder("~/Pictures")
        >>> index.search("a dog on a beach", k=3)
    """

    def __init__(
        self,
        encoder: Encoder,
        collection: str = "images",
        path: str | os.PathLike[str] | None = None,
        *,
        client: ClientAPI | None = None,
        host: str | None = None,
        port: int | None = None,
        chunk_size: int | None = None,
        timeout: float | None = None,
        lock_timeout: float = 0.0,
    ) -> None:
        check_collection_name(collection)  # before the store opens: Chroma checks it late
        chunk = _chunk_size(encoder, chunk_size)
        chroma = client_for(client, path, host, port, timeout)
        found = open_collection(chroma, collection, encoder)
        ref = StoreRef.of(chroma, timeout or DEFAULT_SERVER_TIMEOUT_S)
        self._attach(encoder, chroma, found, "cosine", ref=ref)
        self._lock_timeout = lock_timeout
        self._chunk = chunk
        self._max_batch = max(1, int(chroma.get_max_batch_size()))
        # Chroma ingests large batches faster (1,000 records: about 1.5x faster than 64 at a
        # time), so chunks are gathered into one write up to this size or this age.
        self._write_size = min(self._max_batch, 1024)

    @classmethod
    def open_read_only(
        cls,
        encoder: Encoder,
        collection: str | Collection,
        path: str | os.PathLike[str] | None = None,
        *,
        client: ClientAPI | None = None,
        host: str | None = None,
        port: int | None = None,
    ) -> ImageIndex:
        """Open an existing collection to search it, whoever wrote it; never write to it.

        For collections that clip-multimodal did not write: Chroma's native embedding
        function (`uris`, no documents) or LlamaIndex's `ChromaVectorStore` (the node as
        `_node_content` metadata). Hits carry each record's raw metadata and document; their
        `uri` is Chroma's `uris` field, else the `uri` metadata key, else None. Scores are
        cosine similarity whatever the collection's space (l2, Chroma's default when none is
        recorded, ip or cosine), exact for unit vectors. Nothing about the collection changes:
        `add`, `add_embeddings`, `index_folder` and `delete` raise `ReadOnlyIndexError`.

        Args:
            encoder: the model that wrote the collection's vectors.
            collection: the collection's name, or a Chroma `Collection` object (which brings
                its own client: then pass no location).
            path: an embedded Chroma's folder (default: `default_data_dir()/chroma`).
            client: an existing Chroma client to use instead.
            host: a Chroma server's host.
            port: the server's port.

        Raises:
            IncompatibleIndexError: the collection records another model, or (recording
                none) holds vectors of another dimension than `encoder.dim`, or uses a
                distance space other than cosine, ip and l2. An empty collection that records
                no model is accepted.
            IndexNotFoundError: there is no collection of that name.
            IndexUnavailableError: the Chroma server at host:port cannot be reached.

        Example:
            >>> index = ImageIndex.open_read_only(CLIPEncoder(), "llama_images", "./chroma")
            >>> index.search("a dog on a beach", k=3)
        """
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
        space = check_readable(found, encoder)
        index = cls.__new__(cls)
        ref = StoreRef.of(chroma) if chroma is not None else None
        index._attach(encoder, chroma, found, space, read_only=True, ref=ref)
        return index

    @classmethod
    def rebuild(
        cls,
        encoder: Encoder,
        collection: str = "images",
        path: str | os.PathLike[str] | None = None,
        *,
        host: str | None = None,
        port: int | None = None,
        **options: Any,
    ) -> ImageIndex:
        """Drop the collection, damaged or not, and open it again empty; then refill it with
        `index_folder`. Works when the store is too damaged to open.

        A damaged embedded store (its database missing, empty or corrupt) is moved aside
        to `PATH.damaged-TIMESTAMP`, not deleted, and a new one is created at PATH: the other
        collections it held are in the moved copy. Otherwise only this collection and its
        index files are deleted.

        Args:
            encoder, collection, path, host, port: as for `ImageIndex(...)`.
            options: other `ImageIndex` options (chunk_size, timeout, lock_timeout).

        Example:
            >>> ImageIndex.rebuild(CLIPEncoder(), "photos").index_folder("~/Pictures")
        """
        discard_collection(
            collection, path, host=host, port=port, lock_timeout=options.get("lock_timeout", 0.0)
        )
        return cls(encoder, collection, path, host=host, port=port, **options)

    def _attach(
        self,
        encoder: Encoder,
        client: ClientAPI | None,
        collection: Collection,
        space: str,
        *,
        read_only: bool = False,
        ref: StoreRef | None = None,
    ) -> None:
        self.encoder = encoder
        self.name: str = collection.name
        self.client: ClientAPI | None = client  # None when opened from a Collection object
        self.collection: Collection = collection
        #: The collection's distance space; hits are converted to cosine similarity from it.
        self.space = space
        self._read_only = read_only
        self._chunk = _MIN_CHUNK
        self._max_batch = 1
        self._write_size = 1
        self._write_every_s = 1.0
        self._lock_timeout = 0.0
        self._store = LockedCollection(collection, ref)  # every internal call goes through it

    @property
    def read_only(self) -> bool:
        """True when opened with `open_read_only`: every write raises ReadOnlyIndexError."""
        return self._read_only

    def __repr__(self) -> str:
        mode = ", read_only=True" if self._read_only else ""
        return f"ImageIndex({self.name!r}, model={self.encoder.model_id!r}{mode})"

    def _check_writable(self, operation: str) -> None:
        if self._read_only:
            raise ReadOnlyIndexError(
                f"cannot {operation} collection {self.name!r}: it was opened read-only "
                "(ImageIndex.open_read_only), so it stays as the tool that wrote it left it. "
                "Write with that tool, or build a collection of your own with ImageIndex(...)."
            )

    @contextmanager
    def _writing(self, operation: str) -> Iterator[None]:
        self._check_writable(operation)
        with write_lock(self._store.ref.path, self._lock_timeout):  # other processes wait
            yield

    # -- adding -------------------------------------------------------------------------

    @writes("add to")
    def add(
        self,
        sources: Sequence[ImageInput],
        metadatas: Sequence[Mapping[str, Any] | None] | None = None,
        ids: Sequence[str] | None = None,
        *,
        documents: Sequence[str | None] | None = None,
    ) -> IndexReport:
        """Embed and store images; inputs already stored are not embedded again.

        Args:
            sources: any `ImageInput`s (paths, URLs, bytes, base64, PIL images, arrays).
            metadatas: user metadata per input (str, int, float or bool values).
            ids: record ids; by default the content's SHA-256, so re-adding is a no-op.
            documents: an optional text per input (a caption), for `where_document` filters.

        Returns:
            An IndexReport; `ids` gives each input's record id (None where it failed), and
            `failed` each input that could not be read or decoded, with the reason.
        """
        sources = _as_list(sources)
        n = len(sources)
        metas = _aligned("metadatas", metadatas, n)
        docs = _aligned("documents", documents, n)
        given = _aligned("ids", ids, n)
        if ids is not None and len(set(given)) != n:
            repeated = sorted(i for i, c in Counter(given).items() if c > 1)[:5]
            raise ValueError(f"ids must be unique within one add call; repeated: {repeated}")
        jobs = [Job(i, s, given[i], metas[i], docs[i]) for i, s in enumerate(sources)]
        report = IndexReport(ids=[None] * n)
        self._ingest(jobs, report, None)
        return report

    @writes("add to")
    def add_embeddings(
        self,
        embeddings: np.ndarray | Sequence[Sequence[float]],
        ids: Sequence[str],
        *,
        uris: Sequence[str | None] | None = None,
        metadatas: Sequence[Mapping[str, Any] | None] | None = None,
        documents: Sequence[str | None] | None = None,
        modality: str = "image",
        replace: bool = False,
    ) -> None:
        """Store precomputed embeddings (from this index's model) as they are.

        For pipelines that embed elsewhere (a GPU job), and for text records (a caption
        stored as `documents`, `modality="text"`). Vectors are L2-normalized here.

        Args:
            embeddings: (n, dim) vectors.
            ids: one id per vector.
            uris: the image's path or URL per vector.
            metadatas: user metadata per vector.
            documents: a text per vector.
            modality: the `modality` metadata value.
            replace: overwrite records with the same ids; by default they are left as
                they are.
        """
        vectors = self._check_vectors(embeddings, len(ids))
        n = len(ids)
        uri_list = _aligned("uris", uris, n)
        metas = _aligned("metadatas", metadatas, n)
        docs = _aligned("documents", documents, n)
        batch = WriteBatch()
        for i, id_ in enumerate(ids):
            own: Metadata = {"modality": modality}
            if uri_list[i]:
                own["uri"] = str(uri_list[i])
            rows = batch.changed if replace else batch.new
            rows.append((id_, vectors[i], merge_metadata(metas[i], own), uri_list[i], docs[i]))
        self._write(batch)

    @contextmanager
    def writer(self) -> Iterator[IndexWriter]:
        """Store records embedded elsewhere, writes overlapping the caller's embedding.

        For pipelines that embed with their own model runner (a GPU job): read each input
        with `read_image_source`, embed its `payload`, and `put` the `ImageRecord`s. Each
        `put` queues its batch (waiting only while the queue is full); one background
        thread writes the batches in order (merging those that wait), under the index's
        lock. Leaving the block waits for every write;
        a write's error is raised from the next `put` or on leaving.

        Records are added as new: an id already stored keeps its record. Nothing is looked
        up first, so this is the bulk ingest path; `add` is the one that dedupes.

        Raises:
            ReadOnlyIndexError: the index was opened read-only (raised on entering, before
                the caller embeds anything).

        Example:
            >>> with index.writer() as writer:
            ...     for batch in batches:
            ...         sources = [read_image_source(p) for p in batch]
            ...         vectors = my_model([s.payload for s in sources])
            ...         writer.put(ImageRecord.from_source(s, v) for s, v in zip(sources, vectors))
        """
        with (
            self._writing("add to"),
            BackgroundWriter[WriteBatch](self._write, WriteBatch.merged) as background,
        ):
            yield IndexWriter(background, self._check_vectors)

    @writes("sync a folder into")
    def index_folder(
        self,
        path: str | os.PathLike[str],
        recursive: bool = True,
        patterns: Sequence[str] = DEFAULT_PATTERNS,
        *,
        progress: bool | None = None,
        callback: Progress | None = None,
        verify: bool = False,
    ) -> IndexReport:
        """Bring the collection in sync with a folder of images, doing as little as possible.

        Files whose mtime and size match their record are skipped without being read (a
        file rewritten in place with the same size and mtime keeps its old vector; pass
        `verify=True` to hash every file). Changed files are re-embedded; a file only touched
        keeps its vector. Records of deleted files, of paths that are no longer files, and
        of files that can no longer be read as images (listed in `failed`) are removed; a
        file deleted during the run is treated as gone. A renamed or copied file reuses the
        stored vector of the same content. Record ids are `file:` + the SHA-256 of the absolute path, so identical
        files at two paths are two records; records carry `folder` (the synced root).

        Args:
            path: the folder.
            recursive: include subfolders.
            patterns: file name patterns (case-insensitive).
            progress: show a tqdm bar; None shows it when stderr is a terminal.
            callback: called as `callback(done, total)` as files are processed.
            verify: read and hash every file, re-embedding those whose content changed.

        Returns:
            An IndexReport: added, updated, unchanged, removed, failed (each with the
            reason) and embedded (how many images went through the model).
        """
        root = Path(path).expanduser().absolute()
        if not root.is_dir():
            raise NotADirectoryError(f"cannot index {root}: not a folder; pass a folder path")
        folder = str(root)
        files = scan_folder(root, recursive, patterns)
        stored = self._folder_records(folder)
        plan = plan_sync(files, stored, verify)
        report = IndexReport(unchanged=len(plan.unchanged))
        jobs = [
            Job(i, f.uri, file_id(f.uri), extra={"folder": folder}, from_folder=True)
            for i, f in enumerate(plan.todo)
        ]
        report.ids = [None] * len(jobs)
        with _progress(len(files), progress, callback) as advance:
            advance(len(plan.unchanged))
            state = self._ingest(jobs, report, advance)
        stored_ids = {id_ for id_, _ in stored.values()}
        # A file that vanished or stopped being an image must not stay searchable.
        gone = plan.gone + [i for i in state.vanished_ids + state.failed_ids if i in stored_ids]
        if gone:
            # After the writes: a renamed file's record was rewritten from the old vector first.
            self._store.delete(ids=gone)
            report.removed = len(gone)
        report.ids = []
        return report

    def _folder_records(self, folder: str) -> dict[str, tuple[str, Mapping[str, Any]]]:
        got = self._store.get(where={"folder": folder}, include=["metadatas"])
        out: dict[str, tuple[str, Mapping[str, Any]]] = {}
        for id_, meta in zip(got["ids"], got["metadatas"] or [], strict=True):
            uri = uri_of(meta)
            if uri is not None:
                out[uri] = (id_, meta or {})
        return out

    def _ingest(
        self, jobs: Sequence[Job], report: IndexReport, advance: Advance | None
    ) -> CallState:
        state = CallState()
        pending, since = WriteBatch(), time.monotonic()
        lost = [0, 0]  # new and changed records another process wrote first (a server)

        def write(batch: WriteBatch) -> None:
            self._write(batch)
            for i, n in enumerate(lost_writes(self._store, batch, state.run)):
                lost[i] += n

        with BackgroundWriter[WriteBatch](write, WriteBatch.merged) as writer:
            for start in range(0, len(jobs), self._chunk):
                chunk = jobs[start : start + self._chunk]
                pending = pending.merged(
                    ingest_chunk(chunk, self._store, self.encoder, report, state)
                )
                age = time.monotonic() - since
                if len(pending) >= self._write_size or (
                    len(pending) and age >= self._write_every_s
                ):
                    writer.put(pending)
                    pending, since = WriteBatch(), time.monotonic()
                if advance is not None:
                    advance(len(chunk))
            if len(pending):
                writer.put(pending)
        report.added -= lost[0]
        report.updated -= lost[1]
        report.unchanged += lost[0] + lost[1]
        return state

    def _write(self, batch: WriteBatch) -> None:
        # New ids use add (cheaper; a duplicate id from a racing writer is ignored by Chroma),
        # changed ones upsert, touched ones update metadata only.
        self._check_writable("write to")
        with self._store.lock:
            for rows, method in (
                (batch.new, self._store.add),
                (batch.changed, self._store.upsert),
            ):
                for start in range(0, len(rows), self._max_batch):
                    part = rows[start : start + self._max_batch]
                    docs = [r[4] for r in part]
                    method(
                        ids=[r[0] for r in part],
                        embeddings=np.stack([r[1] for r in part]),
                        metadatas=[r[2] for r in part],
                        uris=[r[3] for r in part],  # Chroma accepts None
                        documents=docs if any(d is not None for d in docs) else None,
                    )
            for start in range(0, len(batch.refreshed), self._max_batch):
                part_r = batch.refreshed[start : start + self._max_batch]
                self._store.update(
                    ids=[r[0] for r in part_r],
                    metadatas=[r[1] for r in part_r],
                )

    # -- searching ----------------------------------------------------------------------

    def embed_query(self, query: str | ImageInput, query_type: QueryType = "auto") -> np.ndarray:
        """The query's vector: a text, or an image (see `search` for how `auto` decides)."""
        if _is_text_query(query, query_type):
            vectors = self.encoder.embed_texts([str(query)])
        else:
            try:
                vectors = self.encoder.embed_images([query])
            except ImageLoadError as exc:
                if query_type == "auto" and isinstance(query, str):
                    raise _read_as_image(exc) from exc
                raise
        return np.asarray(vectors[0], dtype=np.float32)

    def search(
        self,
        query: str | ImageInput,
        k: int = 4,
        where: Where | None = None,
        where_document: Where | None = None,
        *,
        query_type: QueryType = "auto",
    ) -> list[SearchHit]:
        """The k images closest to a text or an image, best first.

        Args:
            query: a text, or an image. With `query_type="auto"` a str that looks like a
                path or URL is an image, which must load (`images.is_image_query` states the
                rule: a URL or data: URI; a str starting with / \\ ./ ../ ~ or a drive;
                ending with an image extension; one word holding / or \\; an existing file);
                any other str is a text. Bytes, Path, PIL images and arrays are images.
            k: how many hits.
            where: a Chroma metadata filter, e.g. `{"mime": "image/png"}`.
            where_document: a Chroma document filter, e.g. `{"$contains": "cat"}`.
            query_type: "auto", or force "text" (say, to search for the words "AC/DC") or
                "image" (say, for base64 image data).

        Returns:
            SearchHits; `score` is cosine similarity (from Chroma's distance, by the
            collection's space).

        Raises:
            ImageLoadError: an image query, or a str read as one, cannot be loaded.
        """
        return self.search_by_vector(self.embed_query(query, query_type), k, where, where_document)

    def search_by_vector(
        self,
        vector: np.ndarray | Sequence[float],
        k: int = 4,
        where: Where | None = None,
        where_document: Where | None = None,
    ) -> list[SearchHit]:
        """The k records closest to a vector from this index's model, best first."""
        if k < 1:
            return []
        result = self._store.query(
            query_embeddings=[self._check_vectors([vector], 1)[0]],
            n_results=k,
            where=dict(where) if where else None,
            where_document=dict(where_document) if where_document else None,
            include=["metadatas", "distances", "uris", "documents"],
        )
        return hits_from_query(result, self.space)

    def max_marginal_relevance(
        self,
        query: str | ImageInput,
        k: int = 4,
        fetch_k: int = 20,
        lambda_mult: float = 0.5,
        where: Where | None = None,
        where_document: Where | None = None,
        *,
        query_type: QueryType = "auto",
    ) -> list[SearchHit]:
        """Hits that are relevant and diverse: maximal marginal relevance over `fetch_k`.

        `lambda_mult` is 1 for pure relevance, 0 for pure diversity. Scores stay the
        cosine similarity to the query.
        """
        vector = self.embed_query(query, query_type)
        return self.max_marginal_relevance_by_vector(
            vector, k, fetch_k, lambda_mult, where, where_document
        )

    def max_marginal_relevance_by_vector(
        self,
        vector: np.ndarray | Sequence[float],
        k: int = 4,
        fetch_k: int = 20,
        lambda_mult: float = 0.5,
        where: Where | None = None,
        where_document: Where | None = None,
    ) -> list[SearchHit]:
        """Like `max_marginal_relevance`, for a vector."""
        if not 0.0 <= lambda_mult <= 1.0:
            raise ValueError(f"lambda_mult must be in [0, 1], got {lambda_mult}")
        if k < 1:
            return []
        query = self._check_vectors([vector], 1)[0]
        result = self._store.query(
            query_embeddings=[query],
            n_results=max(k, fetch_k),
            where=dict(where) if where else None,
            where_document=dict(where_document) if where_document else None,
            include=["metadatas", "distances", "uris", "documents", "embeddings"],
        )
        hits = hits_from_query(result, self.space)
        if not hits:
            return []
        candidates = np.asarray(result["embeddings"][0], dtype=np.float32)
        return [hits[i] for i in mmr_select(query, candidates, k, lambda_mult)]

    # -- records ------------------------------------------------------------------------

    def get(self, ids: Sequence[str], *, include_embeddings: bool = False) -> list[IndexRecord]:
        """The stored records of these ids, in the order asked (missing ids are left out)."""
        if isinstance(ids, str):
            ids = [ids]
        if not ids:
            return []
        include = ["metadatas", "uris", "documents"] + (
            ["embeddings"] if include_embeddings else []
        )
        got = self._store.get(ids=list(ids), include=include)
        embeddings = got.get("embeddings")
        n = len(got["ids"])
        none: list[Any] = [None] * n
        metas: list[Any] = list(got["metadatas"] or none)
        uris: list[Any] = list(got.get("uris") or none)
        docs: list[Any] = list(got.get("documents") or none)
        found: dict[str, IndexRecord] = {}
        for row, id_ in enumerate(got["ids"]):
            meta = dict(metas[row] or {})
            vector = None if embeddings is None else np.asarray(embeddings[row], np.float32)
            found[id_] = IndexRecord(id_, uri_of(meta, uris[row]), meta, vector, docs[row])
        return [found[i] for i in ids if i in found]

    @writes("delete from")
    def delete(self, ids: Sequence[str] | None = None, where: Where | None = None) -> None:
        """Delete records by id, by metadata filter, or both (records matching both)."""
        if ids is None and where is None:
            raise ValueError("pass ids or where; to delete everything, drop the collection")
        if isinstance(ids, str):
            ids = [ids]
        self._store.delete(
            ids=list(ids) if ids is not None else None,
            where=dict(where) if where else None,
        )

    def count(self) -> int:
        """How many records the collection holds."""
        return self._store.count()

    # -- helpers ------------------------------------------------------------------------

    def _check_vectors(self, vectors: Any, n: int) -> np.ndarray:
        array = np.asarray(vectors, dtype=np.float32)
        dim = int(self.encoder.dim)
        if array.ndim != 2 or array.shape != (n, dim):
            raise ValueError(
                f"expected {n} vector(s) of dim {dim} from model {self.encoder.model_id}, "
                f"got shape {array.shape}"
            )
        norms = np.linalg.norm(array, axis=1, keepdims=True)
        return np.asarray(array / np.maximum(norms, 1e-12), dtype=np.float32)


def _chunk_size(encoder: Encoder, chunk_size: int | None) -> int:
    if chunk_size is None:
        # Follow the encoder's batch: on GPU (256 and more) larger chunks keep the model fed.
        batch = getattr(encoder, "batch_size", _MIN_CHUNK)
        return min(max(int(batch), _MIN_CHUNK), _MAX_CHUNK)
    if chunk_size < 1:
        raise ValueError(f"chunk_size must be at least 1, got {chunk_size}")
    return chunk_size


def _is_text_query(query: object, query_type: QueryType) -> bool:
    if query_type not in ("auto", "text", "image"):
        raise ValueError(f"query_type must be 'auto', 'text' or 'image', not {query_type!r}")
    if query_type != "auto":
        if query_type == "text" and not isinstance(query, str):
            raise TypeError(f"a text query must be a str, got {type(query).__name__}")
        return query_type == "text"
    return isinstance(query, str) and not images.is_image_query(query)


def _read_as_image(exc: ImageLoadError) -> ImageLoadError:
    """The load error of a str the query rule read as an image, saying how to search its words."""
    return ImageLoadError(
        exc.source,
        f"{exc.reason}. A str that looks like a path or URL is read as an image; to search "
        'for its words, pass query_type="text"',
    )


def _as_list(sources: Sequence[ImageInput]) -> list[ImageInput]:
    single = (str, bytes, bytearray, os.PathLike, io.IOBase, Image.Image)
    if isinstance(sources, single) or (isinstance(sources, np.ndarray) and sources.ndim < 4):
        raise TypeError(f"pass a list of images, not one {type(sources).__name__}: add([image])")
    return list(sources)


def _aligned(name: str, values: Sequence[Any] | None, n: int) -> list[Any]:
    if values is None:
        return [None] * n
    values = list(values)
    if len(values) != n:
        raise ValueError(f"{name} has {len(values)} entries for {n} inputs; give one per input")
    return values


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
