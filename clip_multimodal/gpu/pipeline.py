"""Files to embeddings with decoding and preprocessing on the encoder's device.

Three stages run at once, each on its own thread:

1. **read**: a thread pool reads files (or URLs, bytes…) ahead of the model (bounded in host
   bytes), probes each header, and decodes on the CPU only what the device decoder does not
   take (PNG via libpng, other formats via PIL);
2. **decode**: packs a batch's JPEG bytes into one pinned host buffer, decodes them with
   nvJPEG, and resizes, crops and normalizes on the device (on a side CUDA stream, so it
   overlaps the model), in chunks whose decoded pixels fit the decode budget;
3. **model**: the caller's thread runs the image tower (bf16 on CUDA) on the batch.

`add_to_index` adds a fourth: the index's writer (`ImageIndex.writer()`) stores batch k while batch k+1
is embedded, so Chroma, not Python, sets the pace.

The same code runs on the CPU (torch ops are device-agnostic), which is how the tests check
each stage against the reference path.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import nullcontext, suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import numpy as np
import torch

from clip_multimodal.errors import ImageLoadError
from clip_multimodal.gpu.decode import JpegDecoder, Loaded, load_payload, pil_pixels
from clip_multimodal.gpu.memory import decode_bytes, is_out_of_memory, release_cached, to_device
from clip_multimodal.gpu.readahead import ReadAhead
from clip_multimodal.gpu.transforms import PreprocessSpec, preprocess_batch
from clip_multimodal.types import ImageEmbeddings, ImageInput, PixelEncoder

if TYPE_CHECKING:
    from clip_multimodal.index import ImageIndex, IndexReport

__all__ = ["EmbeddedBatch", "GPUImagePipeline", "fit_batch_size"]

T = TypeVar("T")
_HOST_BYTES = 2 << 30  # read-ahead: what finished reads may hold in host memory
_CPU_DECODE_BUDGET = 2 << 30  # the decode stage's memory budget off CUDA


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


def fit_batch_size(encoder: PixelEncoder, size: int, start: int, reserve_bytes: int = 0) -> int:
    """The largest batch (`start`, halved on each out-of-memory) the image tower runs at.

    Tried with a real forward pass on zeros while `reserve_bytes` stay allocated on the
    device: the decode stage's budget, which runs beside the model.
    """
    reserve = torch.empty(reserve_bytes, dtype=torch.uint8, device=encoder.device)
    batch = max(1, start)
    while batch > 1 and not _fits(encoder, batch, size):
        release_cached(encoder.device)  # after _fits returned: its traceback is gone
        batch //= 2
    del reserve
    return batch


def _fits(encoder: PixelEncoder, batch: int, size: int) -> bool:
    pixels = torch.zeros((batch, 3, size, size), dtype=encoder.input_dtype, device=encoder.device)
    try:
        encoder.embed_pixels(pixels)
    except RuntimeError as exc:
        if is_out_of_memory(exc):
            return False
        raise
    return True


def default_decode_budget(device: torch.device) -> int:
    """A quarter of the device memory free now (on CUDA), or 2 GiB elsewhere."""
    if device.type != "cuda":
        return _CPU_DECODE_BUDGET
    free, _ = torch.cuda.mem_get_info(device)
    return max(256 << 20, free // 4)


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
        batch_size: images per forward pass; default: the encoder's `batch_size`, on CUDA
            halved while the tower runs out of memory (and later on any out-of-memory).
        decode_budget: device bytes the decode stage may use at once, counted per decoded
            pixel (`memory.decode_bytes`): a batch is decoded and preprocessed in chunks
            under it, halved on out-of-memory. Default: a quarter of the free device
            memory on CUDA, 2 GiB elsewhere.
        read_ahead_bytes: host bytes the readers' finished inputs may hold (decoded pixels
            of PNGs and PIL-decoded files, encoded JPEG bytes); a batch stops there too.
        read_workers: threads reading and probing files ahead of the model.
        prefetch: how many batches the readers run ahead at most.

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
        decode_budget: int | None = None,
        read_ahead_bytes: int = _HOST_BYTES,
        read_workers: int = 8,
        prefetch: int = 2,
    ) -> None:
        self.encoder = encoder
        self.device = encoder.device
        self.spec = PreprocessSpec.from_transform(encoder.preprocess)
        self.read_workers = read_workers
        self.prefetch = prefetch
        self.read_ahead_bytes = read_ahead_bytes
        self._batch_size = batch_size
        self._decode_budget = decode_budget
        self._model_rows: int | None = None  # set after the tower ran out of memory
        self._decoder = JpegDecoder(self.device)
        self._dtype = encoder.input_dtype
        self._decode_lock = threading.Lock()  # one decode stage at a time owns the buffer

    @property
    def decode_budget(self) -> int:
        """Device bytes the decode stage uses at most (halved after an out-of-memory)."""
        if self._decode_budget is None:
            self._decode_budget = default_decode_budget(self.device)
        return self._decode_budget

    @property
    def batch_size(self) -> int:
        if self._batch_size is None:
            start = self.encoder.batch_size  # the user's bound (CLIPEncoder(batch_size=…))
            cuda = self.device.type == "cuda"
            budget = self.decode_budget  # decided first: the fit leaves it free
            self._batch_size = (
                fit_batch_size(self.encoder, self.spec.size, start, budget) if cuda else start
            )
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
                vectors = self._embed(item.pixels)
            yield EmbeddedBatch(item.positions, vectors, item.errors, item.infos)

    def _embed(self, pixels: torch.Tensor) -> np.ndarray:
        """The model stage, in parts of at most `_model_rows` rows, halved on out-of-memory."""
        parts: list[np.ndarray] = []
        start = 0
        while start < len(pixels):
            rows = min(self._model_rows or len(pixels), len(pixels) - start)
            vectors = self._try_embed(pixels[start : start + rows])
            if vectors is None:
                release_cached(self.device)  # the failed forward's frames are gone by now
                self._model_rows = rows // 2
                continue
            parts.append(vectors)
            start += rows
        return parts[0] if len(parts) == 1 else np.concatenate(parts)

    def _try_embed(self, pixels: torch.Tensor) -> np.ndarray | None:
        """The vectors, or None where the tower ran out of memory on more than one row."""
        try:
            return self.encoder.embed_pixels(pixels)
        except RuntimeError as exc:
            if len(pixels) > 1 and is_out_of_memory(exc):
                return None
            raise

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
        cuda = self.device.type == "cuda"
        stream = torch.cuda.Stream(self.device) if cuda else None  # type: ignore[no-untyped-call]
        with self._decode_lock, ThreadPoolExecutor(self.read_workers) as pool:
            reads = ReadAhead(
                pool,
                read,
                sources,
                max_items=size * (1 + self.prefetch),
                max_bytes=self.read_ahead_bytes,
                workers=self.read_workers,
            )
            try:
                while batch := reads.take(size):  # the readers go on while it decodes
                    yield self._prepare(batch, stream)
            finally:
                reads.close()

    def _prepare(
        self, batch: list[tuple[int, Loaded]], stream: torch.cuda.Stream | None
    ) -> _Prepared:
        with torch.cuda.stream(stream) if stream is not None else nullcontext():
            positions, parts, errors = self._decode_in_chunks(batch)
            pixels = None
            if parts:
                pixels = parts[0] if len(parts) == 1 else torch.cat(parts)
        if stream is not None:
            stream.synchronize()  # the host buffer is refilled by the next batch
        infos = {i: loaded.info for i, loaded in batch}
        return _Prepared(positions, pixels, errors, infos)

    def _decode_in_chunks(
        self, batch: list[tuple[int, Loaded]]
    ) -> tuple[list[int], list[torch.Tensor], dict[int, ImageLoadError]]:
        """Decode and preprocess `batch` in chunks whose decoded pixels fit the budget.

        On out-of-memory the budget halves and the chunk is tried again in smaller ones; an
        image that fails alone is decoded and preprocessed on the host instead.
        """
        errors = {i: loaded.error for i, loaded in batch if loaded.error is not None}
        todo = [(i, loaded) for i, loaded in batch if loaded.error is None]
        costs = {i: decode_bytes(*loaded.shape, self.spec.size) for i, loaded in todo}
        positions: list[int] = []
        parts: list[torch.Tensor] = []
        while todo:
            chunk = _fill(todo, costs, self.decode_budget)
            done = self._try_chunk(chunk)
            if done is None:
                release_cached(self.device)  # the failed chunk's tensors are gone by now
                if len(chunk) > 1:
                    self._decode_budget = sum(costs[i] for i, _ in chunk) // 2
                    continue
                done = self._on_host(*chunk[0])
            del todo[: len(chunk)]
            chunk_positions, pixels, chunk_errors = done
            positions += chunk_positions
            errors.update(chunk_errors)
            if pixels is not None:
                parts.append(pixels)
        return positions, parts, errors

    def _try_chunk(
        self, chunk: list[tuple[int, Loaded]]
    ) -> tuple[list[int], torch.Tensor | None, dict[int, ImageLoadError]] | None:
        """The chunk decoded and preprocessed on the device; None on out-of-memory."""
        try:
            images, errors = self._decode(chunk)
            positions = sorted(images)
            if not positions:
                return [], None, errors
            ordered = [images.pop(p) for p in positions]  # the chunk's last references
            return positions, preprocess_batch(ordered, self.spec, self._dtype), errors
        except RuntimeError as exc:
            if is_out_of_memory(exc):
                return None
            raise

    def _on_host(
        self, position: int, loaded: Loaded
    ) -> tuple[list[int], torch.Tensor | None, dict[int, ImageLoadError]]:
        """One image too large for the device's free memory: decode and preprocess it on
        the host (PIL, the reference decoder), and send only the model's input over."""
        try:
            pixels = loaded.pixels
            if pixels is None:
                pixels = pil_pixels(loaded.jpeg or b"", loaded.desc)
        except ImageLoadError as exc:
            return [], None, {position: exc}
        row = preprocess_batch([pixels], self.spec, self._dtype)
        return [position], to_device(row, self.device), {}

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
            images[i] = to_device(pixels, self.device)
        for i, loaded in batch:
            if loaded.pixels is not None:
                images[i] = to_device(loaded.pixels, self.device)
        return images, errors


def _fill(
    todo: list[tuple[int, Loaded]], costs: dict[int, int], budget: int
) -> list[tuple[int, Loaded]]:
    """The longest prefix of `todo` whose decode costs fit `budget` (at least one input)."""
    total, end = 0, 0
    while end < len(todo) and (end == 0 or total + costs[todo[end][0]] <= budget):
        total += costs[todo[end][0]]
        end += 1
    return todo[:end]


def _read_for_index(source: ImageInput) -> Loaded:
    """Read, hash and probe like `ImageIndex.add`, then route the bytes for decoding."""
    from clip_multimodal.images import describe_source
    from clip_multimodal.index import read_image_source

    try:
        src = read_image_source(source)
    except ImageLoadError as exc:
        return Loaded(describe_source(source), error=exc)
    return load_payload(src.payload, src.desc, info=src)
