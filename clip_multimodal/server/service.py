"""What the service does, apart from HTTP: one warm encoder, one index, one micro-batcher."""

from __future__ import annotations

import asyncio
import hashlib
import re
import threading
import uuid
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from clip_multimodal import zeroshot
from clip_multimodal.documents import Provenance
from clip_multimodal.errors import ImageLoadError, IndexUnavailableError, TemplateError
from clip_multimodal.server.batcher import MicroBatcher
from clip_multimodal.server.errors import ApiError
from clip_multimodal.server.settings import ServerSettings
from clip_multimodal.text import Template
from clip_multimodal.types import ImageEmbeddings

if TYPE_CHECKING:
    from chromadb.api import ClientAPI

    from clip_multimodal.index import ImageIndex, IndexReport, SearchHit
    from clip_multimodal.types import Encoder

__all__ = ["Service", "local_file", "record_file"]

_URL = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://")
_MAX_TEMPLATES = 100  # the OpenAI ensemble has 80
_CLASS_CACHE = 64  # label sets remembered; the page asks for the same ones again and again
_EXTENSIONS = {
    "image/png": ".png",
    "image/jpeg": ".jpg",
    "image/gif": ".gif",
    "image/webp": ".webp",
}


class Service:
    """The encoder, the index and the batcher behind the HTTP routes.

    Args:
        settings: the limits and locations.
        encoder: the model, kept warm for the service's lifetime.
        client: a Chroma client to use instead of the one `settings` describe.
    """

    def __init__(
        self, settings: ServerSettings, encoder: Encoder, client: ClientAPI | None = None
    ) -> None:
        self.settings = settings
        self.encoder = encoder
        self.batcher = MicroBatcher(
            encoder, max_batch=settings.max_batch, max_wait_s=settings.batch_wait_ms / 1000
        )
        self._client = client
        self._index: ImageIndex | None = None
        self._index_lock = threading.Lock()
        self._classes: OrderedDict[tuple[Any, ...], np.ndarray] = OrderedDict()

    def close(self) -> None:
        self.batcher.close()

    # -- the index ------------------------------------------------------------------------

    def _open_index(self) -> ImageIndex:
        from clip_multimodal.index import open_index

        with self._index_lock:
            if self._index is None:
                s = self.settings
                self._index = open_index(
                    self.encoder,
                    s.collection,
                    path=s.resolved_data_dir() / "chroma",
                    client=self._client,
                    host=s.chroma_host,
                    port=s.chroma_port,
                )
            return self._index

    async def index(self) -> ImageIndex:
        """The index, opened on first use (and retried after a failure)."""
        return await asyncio.to_thread(self._open_index)

    async def _on_index(self, method: Any, *args: Any, **kwargs: Any) -> Any:
        """Call an index method in a thread; a lost Chroma server becomes 503."""
        try:
            return await asyncio.to_thread(method, *args, **kwargs)
        except IndexUnavailableError:
            raise
        except (ConnectionError, OSError) as exc:
            raise IndexUnavailableError(f"the Chroma index is unreachable ({exc})") from exc
        except Exception as exc:
            if _is_transport_error(exc):
                raise IndexUnavailableError(f"the Chroma index is unreachable ({exc})") from exc
            raise

    async def count(self) -> int:
        index = await self.index()
        return int(await self._on_index(index.count))

    # -- embedding ------------------------------------------------------------------------

    async def embed_texts(self, texts: Sequence[str], field: str = "texts") -> np.ndarray:
        self._check_count(len(texts), field)
        self._check_lengths(texts, field)
        return await self.batcher.embed_texts(texts)

    async def embed_images(self, images: Sequence[bytes]) -> ImageEmbeddings:
        self._check_count(len(images), "images")
        return await self.batcher.embed_images(images)

    async def embed_image(self, image: bytes) -> np.ndarray:
        """One image's vector; an undecodable image is a 400."""
        result = await self.batcher.embed_images([image])
        if result.errors:
            raise result.errors[0]
        return np.asarray(result.vectors[0])

    def _check_lengths(self, texts: Sequence[str], field: str) -> None:
        # CLIP reads 77 tokens; a longer field is a mistake, refused before any work.
        limit = self.settings.max_text_chars
        for i, text in enumerate(texts):
            if len(text) > limit:
                raise ApiError(
                    422,
                    f"{field}[{i}] has {len(text)} characters; the limit is {limit} "
                    "(CLIP reads only its first 77 tokens)",
                )

    def _check_count(self, n: int, what: str) -> None:
        if n > self.settings.max_items:
            raise ApiError(
                400, f"{n} {what} in one request; the limit is {self.settings.max_items}"
            )

    # -- search, rank, classify -----------------------------------------------------------

    async def search(
        self, vector: np.ndarray, k: int, where: Mapping[str, Any] | None
    ) -> list[SearchHit]:
        if k > self.settings.max_k:
            raise ApiError(400, f"k={k} is above this server's limit of {self.settings.max_k}")
        from chromadb.errors import InvalidArgumentError

        index = await self.index()
        try:
            hits: list[SearchHit] = await self._on_index(index.search_by_vector, vector, k, where)
        except (ValueError, TypeError, InvalidArgumentError) as exc:
            raise ApiError(400, f"invalid search ({exc}); check the where filter") from exc
        return hits

    @property
    def logit_scale(self) -> float:
        # CLIPEncoder exposes the model's learned scale; CLIP's customary 100 otherwise.
        return float(getattr(self.encoder, "logit_scale", 100.0))

    async def rank(self, image: bytes, candidates: Sequence[str]) -> list[tuple[str, float, float]]:
        """(text, cosine, probability) per candidate, best first."""
        image_vec, text_vecs = await asyncio.gather(
            self.embed_image(image), self.embed_texts(candidates, "candidates")
        )
        scores = text_vecs @ image_vec
        probs = zeroshot.softmax(scores * self.logit_scale)
        order = np.argsort(-scores, kind="stable")
        return [(candidates[i], float(scores[i]), float(probs[i])) for i in order]

    async def classify(
        self, image: bytes, labels: Sequence[str], templates: Sequence[str] | None
    ) -> list[tuple[str, float]]:
        """(label, probability) per label, most likely first: prompt-ensemble zero-shot."""
        image_vec, classes = await asyncio.gather(
            self.embed_image(image), self.class_vectors(labels, templates)
        )
        probs = zeroshot.softmax(classes @ image_vec * self.logit_scale)
        order = np.argsort(-probs, kind="stable")
        return [(labels[i], float(probs[i])) for i in order]

    async def class_vectors(
        self, labels: Sequence[str], templates: Sequence[str] | None
    ) -> np.ndarray:
        """One vector per label: the normalized mean of its prompts (cached per label set)."""
        key = (tuple(labels), tuple(templates) if templates else None)
        if key in self._classes:
            self._classes.move_to_end(key)
            return self._classes[key]
        self._check_count(len(labels), "labels")
        self._check_lengths(labels, "labels")
        self._check_lengths(templates or (), "templates")
        prompts = zeroshot.prompts(labels, _templates(templates))
        vectors = await self.batcher.embed_texts(prompts)  # internal: not a user's item count
        self._classes[key] = zeroshot.class_means(vectors, len(labels))
        if len(self._classes) > _CLASS_CACHE:
            self._classes.popitem(last=False)
        return self._classes[key]

    # -- stored images --------------------------------------------------------------------

    async def image_file(self, record_id: str) -> tuple[Path | bytes, str]:
        """The local file (or, for an image inside a document, its bytes) and MIME type of an
        indexed image.

        Only a record's own URI is ever opened, never a path from the request, and only
        when it is an absolute path to a regular file (not a link) of the recorded image type,
        size and modification time. An image inside a document is extracted again from the
        recorded document, unchanged since indexing, and served only if it hashes as recorded.
        """
        if not record_id or len(record_id) > 512:
            raise ApiError(404, "no image with this id in the index")
        index = await self.index()
        records = await self._on_index(index.get, [record_id])
        if not records:
            raise ApiError(404, f"no image with id {record_id!r} in the index")
        record = records[0]
        if Provenance.from_metadata(record.metadata) is not None:
            data = await asyncio.to_thread(_document_image, record_id, record.uri, record.metadata)
            return data, str(record.metadata.get("mime", "image/png"))
        path = local_file(record.uri)
        if path is None:
            raise ApiError(404, f"image {record_id!r} has no local file to serve")
        mime = str(record.metadata.get("mime", ""))
        if not mime.startswith("image/") or not _unchanged(path, record.metadata):
            raise ApiError(404, f"image {record_id!r} changed since it was indexed; re-index it")
        return path, mime

    # -- indexing uploads -----------------------------------------------------------------

    async def index_uploads(self, uploads: Sequence[tuple[bytes, str]]) -> IndexReport:
        """Check, store under `data_dir/uploads` and index uploaded images."""
        from clip_multimodal.index import FailedItem, IndexReport

        self._check_count(len(uploads), "images")
        index = await self.index()
        folder = self.settings.resolved_data_dir() / "uploads"
        saved = await asyncio.gather(*(asyncio.to_thread(_save, d, folder) for d, _ in uploads))
        report = IndexReport()
        good = [i for i, s in enumerate(saved) if isinstance(s, Path)]
        for i, outcome in enumerate(saved):
            if not isinstance(outcome, Path):
                report.failed.append(FailedItem(uploads[i][1], outcome))
        if good:
            names = [{"filename": _basename(uploads[i][1])} for i in good]
            added = await self._on_index(index.add, [str(saved[i]) for i in good], names)
            report.added, report.unchanged = added.added, added.unchanged
            report.failed += added.failed
            ids: list[str | None] = [None] * len(uploads)
            for i, id_ in zip(good, added.ids, strict=True):
                ids[i] = id_
            report.ids = ids
        else:
            report.ids = [None] * len(uploads)
        return report


def _templates(templates: Sequence[str] | None) -> list[Template]:
    if templates:
        if len(templates) > _MAX_TEMPLATES:
            raise ApiError(400, f"{len(templates)} templates; the limit is {_MAX_TEMPLATES}")
        try:  # each checked once here, before any work
            zeroshot.check_templates(templates)
        except TemplateError as exc:
            raise ApiError(422, str(exc)) from exc
        return list(templates)
    return zeroshot.default_templates()


def local_file(uri: str | None) -> Path | None:
    """The absolute path of an existing regular file named by a record's URI, else None.

    Links are refused: what was indexed is the file, not whatever a link points at now.
    """
    if not uri or _URL.match(uri) or uri.startswith("data:"):
        return None
    path = Path(uri)
    if not path.is_absolute() or path.is_symlink() or not path.is_file():
        return None
    return path


def record_file(uri: str | None, metadata: Mapping[str, Any]) -> Path | None:
    """The local file a record's image is served from: its own, or its document's."""
    if Provenance.from_metadata(metadata) is not None:
        return local_file(str(metadata["source"]))
    return local_file(uri)


def _document_image(record_id: str, uri: str | None, metadata: Mapping[str, Any]) -> bytes:
    """The recorded image of a document, read again from the recorded document only."""
    from clip_multimodal.documents import document_fragment, read_document_image

    source = local_file(str(metadata["source"]))
    found = document_fragment(uri) if uri else None
    if source is None or found is None or found.path != str(source):
        raise ApiError(404, f"image {record_id!r} has no local document to serve")
    recorded = {"size": metadata.get("doc_size"), "mtime_ns": metadata.get("doc_mtime_ns")}
    changed = ApiError(404, f"image {record_id!r} changed since it was indexed; re-index it")
    if not _unchanged(source, recorded):
        raise changed
    try:
        data = read_document_image(str(uri))
    except ImageLoadError as exc:
        raise changed from exc
    if hashlib.sha256(data).hexdigest() != metadata.get("sha256"):
        raise changed
    return data


def _unchanged(path: Path, metadata: Mapping[str, Any]) -> bool:
    """The file still has the size (and, where recorded, the mtime) the index saw."""
    size, mtime_ns = metadata.get("size"), metadata.get("mtime_ns")
    try:
        stat = path.stat()
    except OSError:  # removed since the check above
        return False
    if not isinstance(size, int) or size != stat.st_size:
        return False
    return not isinstance(mtime_ns, int) or mtime_ns == stat.st_mtime_ns


def _save(data: bytes, folder: Path) -> Path | str:
    """Write a decodable image under a content-addressed name; else the reason it failed."""
    from clip_multimodal.images import load_image_with_info

    try:
        _, info = load_image_with_info(data)
    except ImageLoadError as exc:
        return exc.reason
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{hashlib.sha256(data).hexdigest()}{_EXTENSIONS.get(info.mime, '.img')}"
    if not path.exists():
        tmp = path.with_suffix(f".{uuid.uuid4().hex}.part")  # concurrent uploads never share one
        tmp.write_bytes(data)
        tmp.replace(path)
    return path


def _basename(name: str) -> str:
    return re.split(r"[\\/]", name)[-1][:200] or "upload"


def _is_transport_error(exc: BaseException) -> bool:
    try:
        import httpx
    except ImportError:  # pragma: no cover - chromadb depends on httpx
        return False
    return isinstance(exc, httpx.TransportError)
