"""ImageIndex: one Chroma collection of image embeddings, searchable by text or by image."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

import numpy as np

from clip_multimodal.errors import ReadOnlyIndexError
from clip_multimodal.index._bulk import IndexWriter
from clip_multimodal.index._chroma import LockedCollection
from clip_multimodal.index._documents import DocumentSync, is_document_input
from clip_multimodal.index._health import StoreRef
from clip_multimodal.index._ingest import (
    MAX_CHUNK,
    CallState,
    Job,
    WriteBatch,
    WritePolicy,
    add_jobs,
    embedding_batch,
    ingest,
)
from clip_multimodal.index._lock import sole_writer, write_lock, writes
from clip_multimodal.index._names import check_collection_name
from clip_multimodal.index._reader import IndexReader
from clip_multimodal.index._records import IndexReport
from clip_multimodal.index._repair import discard_collection
from clip_multimodal.index._store import (
    DEFAULT_SERVER_TIMEOUT_S,
    client_for,
    max_batch_size,
    open_collection,
    open_existing,
)
from clip_multimodal.index._sync import DEFAULT_PATTERNS, sync_folder
from clip_multimodal.index._writer import BackgroundWriter
from clip_multimodal.types import ImageInput

if TYPE_CHECKING:
    from chromadb.api import ClientAPI
    from chromadb.api.models.Collection import Collection

    from clip_multimodal.documents import DocumentOptions
    from clip_multimodal.types import Encoder

__all__ = ["ImageIndex", "open_index"]

Where = Mapping[str, Any]
Progress = Callable[[int, int], None]

#: Default chunk bounds: at least 64 images (each chunk pays two store lookups), at most 512
#: (a chunk's images are held in memory as read, before the model decodes them).
_MIN_CHUNK, _MAX_CHUNK = 64, MAX_CHUNK
#: By default a chunk of scanned files grows (up to 512) while it holds under this many bytes.
_GROW_BYTES = 32 * 2**20


class ImageIndex(IndexReader):
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
        self._grow_bytes: int | None = _GROW_BYTES if chunk_size is None else None
        self._max_batch = max_batch_size(chroma)
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
        chroma, found, space = open_existing(encoder, collection, path, client, host, port)
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
        self._grow_bytes = None
        self._max_batch = 1
        self._write_size = 1
        self._write_every_s = 1.0
        self._lock_timeout = 0.0
        self._store = LockedCollection(collection, ref, space)  # every store call goes through it

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
        document_options: DocumentOptions | None = None,
    ) -> IndexReport:
        """Embed and store images; inputs already stored are not embedded again.

        A path to a PDF or PPTX file is a document: each of its images becomes a record
        with its provenance (`source`, `page`, ...; see `index_folder`), kept in sync with
        the file as `index_folder` keeps documents.

        Args:
            sources: any `ImageInput`s (paths, URLs, bytes, base64, PIL images, arrays), and
                paths of documents.
            metadatas: user metadata per input (str, int, float or bool values).
            ids: record ids; by default the content's SHA-256, so re-adding is a no-op
                (a document's records take `doc:` ids of their own).
            documents: an optional text per input (a caption), for `where_document` filters.
            document_options: how documents become images (`DocumentOptions`: mode
                "images", "pages" or "both", the smallest image kept, deduplication).

        Returns:
            An IndexReport; `ids` gives each input's record id (None where it failed, and
            for a document), `failed` each input that could not be read or decoded, with
            the reason, and `documents`/`document_images` what documents yielded.
        """
        jobs = add_jobs(sources, metadatas, ids, documents)
        report = IndexReport(ids=[None] * len(jobs))
        docs = [j for j in jobs if is_document_input(j.source)]
        if docs:
            jobs = [j for j in jobs if not is_document_input(j.source)]
            sync = self._document_sync(document_options, verify=False)
            sync.sync([str(j.source) for j in docs], report, None, [j.metadata for j in docs])
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
        self._write(embedding_batch(vectors, ids, uris, metadatas, documents, modality, replace))

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
        document_options: DocumentOptions | None = None,
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
            document_options: how documents become images (see `add`).

        Documents (PDF, PPTX) are synced as units: each embedded image (or rendered page)
        is a record carrying `source` (the document), `page` (1-based), `source_kind`
        ("embedded" or "page"), `image_index`, `width`/`height`, `bbox_*` where the
        document gives it and `title`; its URI addresses it (`doc.pdf#page=7&image=0`).
        An unchanged document is skipped by size and mtime, then by content hash; a
        changed one replaces exactly its records; a deleted one loses them; one that
        cannot be read is a failure naming the file and the reason.

        Returns:
            An IndexReport: added, updated, unchanged, removed, failed (each with the
            reason), embedded (how many images went through the model), and documents
            and the images they hold.
        """
        docs = self._document_sync(document_options, verify)
        return sync_folder(
            path,
            recursive,
            patterns,
            verify,
            self._store,
            self._ingest,
            progress,
            callback,
            documents=docs.sync_folder,
        )

    def _document_sync(self, options: DocumentOptions | None, verify: bool) -> DocumentSync:
        return DocumentSync(self._store, self._ingest, self._write, options, verify)

    def _ingest(
        self, jobs: Sequence[Job], report: IndexReport, advance: Callable[[int], None] | None
    ) -> CallState:
        # The write settings are read per call: tests and tuning change them on the instance.
        policy = WritePolicy(
            self._write,
            self._chunk,
            self._write_size,
            self._write_every_s,
            grow_bytes=self._grow_bytes,
            alone=sole_writer(self._store.ref.path),
        )
        return ingest(jobs, self._store, self.encoder, report, policy, advance)

    def _write(self, batch: WriteBatch) -> None:
        self._check_writable("write to")
        self._store.write(batch.new, batch.changed, batch.refreshed, self._max_batch)

    @writes("delete from")
    def delete(self, ids: Sequence[str] | None = None, where: Where | None = None) -> None:
        """Delete records by id, by metadata filter, or both (records matching both)."""
        if ids is None and where is None:
            raise ValueError("pass ids or where; to delete everything, drop the collection")
        if isinstance(ids, str):
            ids = [ids]
        self._store.delete(ids, where)


def _chunk_size(encoder: Encoder, chunk_size: int | None) -> int:
    if chunk_size is None:
        # Follow the encoder's batch: on GPU (256 and more) larger chunks keep the model fed.
        batch = getattr(encoder, "batch_size", _MIN_CHUNK)
        return min(max(int(batch), _MIN_CHUNK), _MAX_CHUNK)
    if chunk_size < 1:
        raise ValueError(f"chunk_size must be at least 1, got {chunk_size}")
    return chunk_size


def open_index(
    encoder: Encoder,
    collection: str,
    *,
    path: str | os.PathLike[str] | None = None,
    client: ClientAPI | None = None,
    host: str | None = None,
    port: int | None = None,
    read_only: bool = False,
) -> ImageIndex:
    """The index that a front end's options name (the CLI's, the server's settings).

    The client given wins; else a Chroma server when host or port is set (then `path`, the
    embedded default, is ignored); else an embedded Chroma at `path`. `read_only` opens an
    existing collection with `ImageIndex.open_read_only` and never writes.
    """
    if client is not None:
        where: dict[str, Any] = {"client": client}
    elif host is not None or port is not None:
        where = {"host": host, "port": port}
    else:
        where = {"path": path}
    if read_only:
        return ImageIndex.open_read_only(encoder, collection, **where)
    return ImageIndex(encoder, collection, **where)
