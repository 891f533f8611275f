"""Files to embeddings with decoding and preprocessing on the encoder's device.

Three stages run at once, each on its own thread:

1. **read**: a thread pool reads files (or URLs, bytes…) ahead of the model, probes each
   header, and decodes on the CPU only what the device decoder does not take (PNG via libpng,
   other formats via PIL);
2. **decode**: packs a batch's JPEG bytes into one pinned host buffer, decodes them with
   nvJPEG in one call, and resizes, crops and normalizes on the device (on a side CUDA
   stream, so it overlaps the model);
3. **model**: the caller's thread runs the image tower (bf16 on CUDA) on the batch.

`add_to_index` adds a fourth: the index's writer (`ImageIndex.writer()`) stores batch k while batch k+1
is embedded, so Chroma, not Python, sets the pace.

The same code runs on the CPU (torch ops are device-agnostic), which is how the tests check
each stage against the reference path.
"""

from __future__ import annotations

import queue
import threading
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import nullcontext, suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import numpy as np
import torch

from clip_multimodal.errors import ImageLoadError
from clip_multimodal.gpu.decode import JpegDecoder, Loaded, load_payload, pil_pixels
from clip_multimodal.gpu.transforms import PreprocessSpec, preprocess_batch
from clip_multimodal.types import ImageEmbeddings, ImageInput, PixelEncoder

if TYPE_CHECKING:
    from clip_multimodal.index import ImageIndex, IndexReport

__all__ = ["EmbeddedBatch", "GPUImagePipeline", "fit_batch_size"]

T = TypeVar("T")
_START_BATCH = 1024


@dataclass
class _Prepared:
    positions: list[int]  # input positions of the rows of `pixels`, in order
    pixels: torch.Tensor | None
    errors: dict[int, ImageLoadError]
    infos: dict[int, Any]


@dataclass
class EmbeddedBatch:
    """One batch out of the pipeline: `vectors[j]` embeds input `positions[j]`."""

    positions: list[int]
    vectors: np.ndarray
    errors: dict[int, ImageLoadError] = field(default_factory=dict)
    infos: dict[int, Any] = field(default_factory=dict)


def fit_batch_size(encoder: PixelEncoder, size: int, start: int = _START_BATCH) -> int:
    """The largest batch (start, halved on each out-of-memory) the image tower runs at.

    Tried with a real forward pass on zeros. Decoded images need memory beyond this; the
    pipeline resizes them in bounded groups, so the model's batch dominates.
    """
    if encoder.device.type != "cuda":
        return encoder.batch_size
    batch = start
    while batch > 1:
        try:
            pixels = torch.zeros((batch, 3, size, size), device=encoder.device)
            encoder.embed_pixels(pixels)
            return batch
        except torch.cuda.OutOfMemoryError:
            torch.cuda.empty_cache()
            batch //= 2
    return 1


def _in_background(items: Iterator[T], depth: int = 1) -> Iterator[T]:
    """Run a generator on its own thread, `depth` items ahead; errors re-raise here."""
    out: queue.Queue[tuple[str, Any]] = queue.Queue(maxsize=depth)
    stop = threading.Event()

    def work() -> None:
        try:
            for item in items:
                if stop.is_set():
                    return
                out.put(("item", item))
            out.put(("done", None))
        except BaseException as exc:  # handed to the consumer, which raises it
            out.put(("error", exc))
        finally:
            close = getattr(items, "close", None)
            if close is not None:
                close()  # a generator's `with` blocks (locks, pools) end here, not at GC

    thread = threading.Thread(target=work, name="clip-gpu-decode", daemon=True)
    thread.start()
    try:
        while True:
            kind, value = out.get()
            if kind == "done":
                return
            if kind == "error":
                raise value
            yield value
    finally:
        stop.set()
        while thread.is_alive():  # unblock a producer waiting on a full queue
            with suppress(queue.Empty):
                out.get(timeout=0.05)


class GPUImagePipeline:
    """Embeds image files with decode and preprocessing on the encoder's device.

    Args:
        encoder: the model (a `PixelEncoder`, such as `CLIPEncoder`); its device (CUDA, or
            the CPU for tests) runs every stage, and its `preprocess` is mirrored there.
        batch_size: images per forward pass; default: the largest that fits on CUDA (from
            1024, halved on out-of-memory), the encoder's batch size elsewhere.
        read_workers: threads reading and probing files ahead of the model.
        prefetch: how many batches the readers run ahead.

    Raises:
        UnsupportedPreprocessError: the model's preprocessing is not open_clip's square
            shortest-side resize + center crop (use the encoder directly then).

    Example:
        >>> pipe = GPUImagePipeline(CLIPEncoder("ViT-B-32", device="cuda"))
        >>> result = pipe.embed_files(sorted(Path("photos").glob("*.jpg")))
        >>> result.vectors.shape, result.errors
    """

    def __init__(
        self,
        encoder: PixelEncoder,
        *,
        batch_size: int | None = None,
        read_workers: int = 8,
        prefetch: int = 2,
    ) -> None:
        self.encoder = encoder
        self.device = encoder.device
        self.spec = PreprocessSpec.from_transform(encoder.preprocess)
        self.read_workers = read_workers
        self.prefetch = prefetch
        self._batch_size = batch_size
        self._decoder = JpegDecoder(self.device)
        self._dtype = encoder.input_dtype
        self._decode_lock = threading.Lock()  # one decode stage at a time owns the buffer

    @property
    def batch_size(self) -> int:
        if self._batch_size is None:
            self._batch_size = fit_batch_size(self.encoder, self.spec.size)
        return self._batch_size

    # -- public entry points -------------------------------------------------------------

    def embed(self, sources: Sequence[ImageInput]) -> ImageEmbeddings:
        """Embed any image inputs; failures are reported per input, the rest embedded.

        Returns:
            ImageEmbeddings in input order: `vectors[j]` embeds `sources[indices[j]]`;
            `errors` maps each failed position to its ImageLoadError.
        """
        vectors: list[np.ndarray] = []
        indices: list[int] = []
        errors: dict[int, ImageLoadError] = {}
        for batch in self.stream(sources):
            vectors.append(batch.vectors)
            indices += batch.positions
            errors.update(batch.errors)
        dim = vectors[0].shape[1] if vectors else self.encoder.dim
        stacked = np.concatenate(vectors) if vectors else np.zeros((0, dim), np.float32)
        return ImageEmbeddings(stacked, indices, errors)

    def embed_files(self, paths: Sequence[Any]) -> ImageEmbeddings:
        """`embed` for file paths (str or Path), read without probing for URLs or base64."""
        return self.embed([Path(p) for p in paths])

    def stream(
        self,
        sources: Sequence[Any],
        read: Callable[[Any], Loaded] = load_payload,
    ) -> Iterator[EmbeddedBatch]:
        """Batches in input order as they are embedded; `read` runs in the reader threads."""
        prepared = _in_background(self._prepare_all(list(sources), read))
        for item in prepared:
            if item.pixels is None:
                vectors = np.zeros((0, self.encoder.dim), np.float32)
            else:
                if self.device.type == "cuda":
                    item.pixels.record_stream(torch.cuda.current_stream(self.device))
                vectors = self.encoder.embed_pixels(item.pixels)
            yield EmbeddedBatch(item.positions, vectors, item.errors, item.infos)

    def add_to_index(self, index: ImageIndex, sources: Sequence[ImageInput]) -> IndexReport:
        """Embed sources on the device and store them in `index`, writes overlapping compute.

        Records are the ones `ImageIndex.add` writes (content-hash ids, the same metadata).
        Unlike `add`, stored ids are not looked up first: this is the bulk first ingest, and
        re-adding an existing id leaves its record as it is.
        """
        from clip_multimodal.index import FailedItem, ImageRecord, IndexReport

        report = IndexReport(ids=[None] * len(sources))
        # Entered before the first batch: a read-only index refuses before anything embeds.
        with index.writer() as writer:
            for batch in self.stream(list(sources), _read_for_index):
                records = []
                for row, position in enumerate(batch.positions):
                    src = batch.infos[position]
                    records.append(ImageRecord.from_source(src, batch.vectors[row]))
                    report.ids[position] = src.sha256
                for error in batch.errors.values():
                    report.failed.append(FailedItem(error.source, error.reason))
                report.added += len(records)
                report.embedded += len(records)
                writer.put(records)
        return report

    # -- the read and decode stages (on the decode thread) -------------------------------

    def _prepare_all(
        self, sources: list[Any], read: Callable[[Any], Loaded]
    ) -> Iterator[_Prepared]:
        size = self.batch_size
        ahead = size * (1 + self.prefetch)
        cuda = self.device.type == "cuda"
        stream = torch.cuda.Stream(self.device) if cuda else None  # type: ignore[no-untyped-call]
        with self._decode_lock, ThreadPoolExecutor(self.read_workers) as pool:
            pending: deque[tuple[int, Future[Loaded]]] = deque()
            queued = 0

            def top_up() -> None:
                nonlocal queued
                while queued < len(sources) and len(pending) < ahead:
                    pending.append((queued, pool.submit(read, sources[queued])))
                    queued += 1

            top_up()
            while pending:
                batch = [pending.popleft() for _ in range(min(size, len(pending)))]
                top_up()  # the readers keep working while this batch decodes
                yield self._prepare([(i, f.result()) for i, f in batch], stream)

    def _prepare(
        self, batch: list[tuple[int, Loaded]], stream: torch.cuda.Stream | None
    ) -> _Prepared:
        with torch.cuda.stream(stream) if stream is not None else nullcontext():
            images, errors = self._decode(batch)
            positions = sorted(images)
            pixels = None
            if positions:
                ordered = [images[p] for p in positions]
                pixels = preprocess_batch(ordered, self.spec, self._dtype)
        if stream is not None:
            stream.synchronize()  # the host buffer is refilled by the next batch
        infos = {i: loaded.info for i, loaded in batch}
        return _Prepared(positions, pixels, errors, infos)

    def _decode(
        self, batch: list[tuple[int, Loaded]]
    ) -> tuple[dict[int, torch.Tensor], dict[int, ImageLoadError]]:
        images: dict[int, torch.Tensor] = {}
        errors: dict[int, ImageLoadError] = {}
        jpegs = [(i, loaded) for i, loaded in batch if loaded.jpeg is not None]
        decoded = self._decoder.decode([loaded.jpeg for _, loaded in jpegs if loaded.jpeg])
        for (i, loaded), pixels in zip(jpegs, decoded, strict=True):
            if pixels is None:  # the device decoder refused it: the reference decoder decides
                try:
                    pixels = pil_pixels(loaded.jpeg or b"", loaded.desc)
                except ImageLoadError as exc:
                    errors[i] = exc
                    continue
            images[i] = pixels.to(self.device, non_blocking=True)
        for i, loaded in batch:
            if loaded.error is not None:
                errors[i] = loaded.error
            elif loaded.pixels is not None:
                images[i] = loaded.pixels.to(self.device, non_blocking=True)
        return images, errors


def _read_for_index(source: ImageInput) -> Loaded:
    """Read, hash and probe like `ImageIndex.add`, then route the bytes for decoding."""
    from clip_multimodal.images import describe_source
    from clip_multimodal.index import read_image_source

    try:
        src = read_image_source(source)
    except ImageLoadError as exc:
        return Loaded(describe_source(source), error=exc)
    return load_payload(src.payload, src.desc, info=src)
