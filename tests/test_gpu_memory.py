"""The device pipeline under memory pressure, on the CPU (issue 19, items 2, 3 and 9).

CUDA's part is faked (tests/gpu_fakes.py): a device memory limit that raises
torch.OutOfMemoryError past N live bytes, and torchvision's exact nvJPEG error strings.
Decoding, preprocessing and the model run for real.
"""

from __future__ import annotations

import io
import time
import weakref
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from PIL import Image

from clip_multimodal import CLIPEncoder
from clip_multimodal.gpu import (
    GPUImagePipeline,
    JpegDecoder,
    Loaded,
    fit_batch_size,
    memory,
    pipeline,
)
from clip_multimodal.gpu.memory import decode_bytes, is_out_of_memory, to_device
from clip_multimodal.gpu.readahead import ReadAhead
from clip_multimodal.gpu.transforms import PreprocessSpec, preprocess_batch
from tests import model_builders as mb
from tests.gpu_fakes import (
    CUBLAS_ALLOC_FAILED,
    NVJPEG_ALLOCATOR_FAILURE,
    NVJPEG_BAD_JPEG,
    TORCHVISION_OOM,
    DeviceBudget,
    budgeted,
)

GiB = 1 << 30
SIZE = 32  # the tiny model's input side


@pytest.fixture(scope="module")
def tiny_encoder(tmp_path_factory: pytest.TempPathFactory) -> CLIPEncoder:
    folder = mb.save_model_dir(tmp_path_factory.mktemp("tiny"), mb.causal_cfg())
    return CLIPEncoder(f"local-dir:{folder}", device="cpu", batch_size=4)


def _jpeg(width: int = 96, height: int = 64, seed: int = 0) -> bytes:
    rng = np.random.default_rng(seed)
    coarse = Image.fromarray(rng.integers(0, 256, (3, 4, 3), dtype=np.uint8))
    buf = io.BytesIO()
    coarse.resize((width, height), Image.Resampling.BILINEAR).save(buf, "JPEG", quality=80)
    return buf.getvalue()


class Tower:
    """A PixelEncoder around the real tower, whose forward can be made to fail."""

    def __init__(self, encoder: CLIPEncoder, batch_size: int = 4, device: Any = None) -> None:
        self.encoder = encoder
        self.device = torch.device(device) if device else encoder.device
        self.preprocess, self.input_dtype = encoder.preprocess, encoder.input_dtype
        self.dim, self.batch_size = encoder.dim, batch_size
        self.rows: list[int] = []
        self.fail_above: int | None = None
        self.error: Exception = torch.OutOfMemoryError("CUDA out of memory. Tried to allocate")
        self.scratch: list[weakref.ref[torch.Tensor]] = []

    def embed_pixels(self, pixels: torch.Tensor) -> np.ndarray:
        self.rows.append(len(pixels))
        if self.fail_above is not None and len(pixels) > self.fail_above:
            activations = torch.empty(len(pixels), 1024)  # what a failed forward holds
            self.scratch.append(weakref.ref(activations))
            raise type(self.error)(*self.error.args)  # a fresh one: no traceback kept here
        return self.encoder.embed_pixels(pixels)


# --- what counts as out-of-memory -----------------------------------------------------------


@pytest.mark.parametrize(
    ("exc", "expected"),
    [
        (torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB"), True),
        (RuntimeError(TORCHVISION_OOM), True),
        (RuntimeError(NVJPEG_ALLOCATOR_FAILURE), True),
        (RuntimeError(CUBLAS_ALLOC_FAILED), True),
        (RuntimeError("CUDA error: out of memory"), True),
        (RuntimeError(NVJPEG_BAD_JPEG), False),
        (RuntimeError("Expected all tensors to be on the same device"), False),
        (ValueError("out of memory"), False),
    ],
    ids=[
        "torch",
        "nvjpeg-torch-alloc",
        "nvjpeg-status-5",
        "cublas",
        "cuda",
        "bad-jpeg",
        "other",
        "not-runtime",
    ],
)
def test_is_out_of_memory(exc: BaseException, expected: bool) -> None:
    assert is_out_of_memory(exc) is expected


# --- the decoder: OOM raised, bad files bisected --------------------------------------------


def _stub_decoder(monkeypatch: pytest.MonkeyPatch, fail: Any) -> list[int]:
    """torchvision's decode_jpeg, raising `fail(batch)`'s message where it returns one."""
    import torchvision.io

    real = torchvision.io.decode_jpeg
    calls: list[int] = []

    def decode_jpeg(views: list[torch.Tensor], mode: Any, device: Any) -> list[torch.Tensor]:
        calls.append(len(views))
        message = fail([bytes(v.numpy()) for v in views])
        if message:
            raise RuntimeError(message)
        return real(views, mode=mode, device="cpu")

    monkeypatch.setattr(torchvision.io, "decode_jpeg", decode_jpeg)
    return calls


def test_decoder_out_of_memory_is_raised_not_taken_for_a_bad_batch(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    calls = _stub_decoder(monkeypatch, lambda batch: TORCHVISION_OOM)
    with pytest.raises(RuntimeError, match="Error while decoding JPEG images") as info:
        JpegDecoder(torch.device("cpu")).decode([_jpeg(seed=s) for s in range(8)])
    assert is_out_of_memory(info.value)
    assert calls == [8]  # no one-by-one re-decode, no PIL fallback


def test_one_bad_file_costs_log_n_calls_not_n(monkeypatch: pytest.MonkeyPatch) -> None:
    datas = [_jpeg(seed=s % 3) for s in range(64)]
    bad = b"\xff\xd8\xff\xdb" + b"\x00" * 40  # any bytes: the stub refuses them
    datas[37] = bad
    calls = _stub_decoder(monkeypatch, lambda batch: NVJPEG_BAD_JPEG if bad in batch else None)
    decoded = JpegDecoder(torch.device("cpu")).decode(datas)
    assert [i for i, d in enumerate(decoded) if d is None] == [37]
    assert len(calls) <= 1 + 2 * 6  # was 65: the batch, then each image alone
    assert torch.equal(decoded[0], decoded[3])  # type: ignore[arg-type]


# --- the batch fitted to a memory budget that counts decoded pixels -------------------------


@pytest.fixture(scope="module")
def photo_12mp(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("big") / "12mp.jpg"
    path.write_bytes(_jpeg(4000, 3000, seed=4))
    return path


@pytest.mark.slow
@pytest.mark.parametrize("decode_budget", [None, 8 * GiB], ids=["default", "overestimated"])
def test_12mp_batch_under_a_2gb_device_runs_and_never_raises(
    tiny_encoder: CLIPEncoder, photo_12mp: Path, decode_budget: int | None
) -> None:
    """12 photos of 12 MP: decoded all at once with their float32 copies they need ~2.6 GB."""
    device = DeviceBudget(2 * GiB)
    tower = Tower(tiny_encoder, batch_size=12)
    tower.embed_pixels = budgeted(device, tower.embed_pixels)  # type: ignore[method-assign]
    pipe = GPUImagePipeline(tower, decode_budget=decode_budget)
    pipe._prepare = budgeted(device, pipe._prepare)  # type: ignore[method-assign]
    result = pipe.embed_files([photo_12mp] * 12)
    assert result.indices == list(range(12)) and not result.errors
    assert device.peak <= 2 * GiB
    if decode_budget is None:  # the budget was right: nothing had to be refused
        assert device.refused == 0 and pipe.decode_budget == 2 * GiB
    else:  # the device said no; the stage shrank its chunks instead of failing
        assert device.refused >= 1 and pipe.decode_budget < 2 * GiB
    reference = tiny_encoder.embed_images([photo_12mp])
    assert float((result.vectors @ reference.T).min()) > 0.999


def test_decode_cost_counts_the_full_resolution_image() -> None:
    small, big = decode_bytes(224, 224, 224), decode_bytes(3000, 4000, 224)
    assert big > 20 * 12_000_000  # ≥ 21 bytes per source pixel, not 224x224's
    assert big > 100 * small


def test_decoder_out_of_memory_shrinks_the_chunk(
    tiny_encoder: CLIPEncoder, monkeypatch: pytest.MonkeyPatch
) -> None:
    """nvJPEG says out-of-memory above 3 images: the stage decodes fewer, nothing fails."""
    calls = _stub_decoder(monkeypatch, lambda batch: TORCHVISION_OOM if len(batch) > 3 else None)
    datas = [_jpeg(seed=s) for s in range(10)]
    pipe = GPUImagePipeline(tiny_encoder, batch_size=10, decode_budget=1 * GiB)
    result = pipe.embed(datas)
    assert result.indices == list(range(10)) and not result.errors
    assert calls[0] == 10 and sum(n for n in calls if n <= 3) == 10  # each decoded once
    reference = tiny_encoder.embed_images(datas)
    assert float((result.vectors * reference).sum(axis=1).min()) > 0.999


def test_an_image_too_large_for_the_device_alone_is_done_on_the_host(
    tiny_encoder: CLIPEncoder, monkeypatch: pytest.MonkeyPatch
) -> None:
    big, small = _jpeg(640, 480, seed=1), _jpeg(seed=2)
    _stub_decoder(monkeypatch, lambda batch: TORCHVISION_OOM if big in batch else None)
    result = GPUImagePipeline(tiny_encoder, batch_size=4).embed([small, big, small])
    assert result.indices == [0, 1, 2] and not result.errors
    reference = tiny_encoder.embed_images([small, big, small])
    assert float((result.vectors * reference).sum(axis=1).min()) > 0.999


# --- the model stage: out-of-memory splits the batch; empty_cache after the traceback -------


@pytest.mark.parametrize("error", ["torch", "cublas"])
def test_model_out_of_memory_splits_the_batch(tiny_encoder: CLIPEncoder, error: str) -> None:
    tower = Tower(tiny_encoder, batch_size=8)
    tower.fail_above = 2
    if error == "cublas":
        tower.error = RuntimeError(CUBLAS_ALLOC_FAILED)
    datas = [_jpeg(seed=s) for s in range(8)]
    result = GPUImagePipeline(tower).embed(datas)
    assert result.indices == list(range(8))
    assert tower.rows[:3] == [8, 4, 2] and set(tower.rows[3:]) == {2}
    reference = tiny_encoder.embed_images(datas)
    assert float((result.vectors * reference).sum(axis=1).min()) > 0.999


def test_cache_is_released_after_the_failed_batch_is_dropped(
    tiny_encoder: CLIPEncoder, monkeypatch: pytest.MonkeyPatch
) -> None:
    tower = Tower(tiny_encoder, batch_size=4)
    tower.fail_above = 1
    alive_at_release: list[bool] = []

    def release(device: torch.device) -> None:
        alive_at_release.append(any(ref() is not None for ref in tower.scratch))

    monkeypatch.setattr(pipeline, "release_cached", release)
    GPUImagePipeline(tower).embed([_jpeg(seed=s) for s in range(4)])
    assert fit_batch_size(tower, SIZE, 4) == 1  # type: ignore[arg-type]
    assert alive_at_release and not any(alive_at_release)


def test_a_one_row_out_of_memory_is_raised(tiny_encoder: CLIPEncoder) -> None:
    tower = Tower(tiny_encoder, batch_size=2)
    tower.fail_above = 0
    with pytest.raises(torch.OutOfMemoryError):
        GPUImagePipeline(tower).embed([_jpeg()])


# --- batch_size honoured ---------------------------------------------------------------------


def test_fit_starts_at_the_encoders_batch_size_and_halves_on_cublas(
    tiny_encoder: CLIPEncoder,
) -> None:
    tower = Tower(tiny_encoder, batch_size=48)
    tower.fail_above, tower.error = 10, RuntimeError(CUBLAS_ALLOC_FAILED)
    assert fit_batch_size(tower, SIZE, tower.batch_size) == 6  # type: ignore[arg-type]
    assert tower.rows == [48, 24, 12, 6]


def test_fit_leaves_the_decode_budget_free(tiny_encoder: CLIPEncoder) -> None:
    tower = Tower(tiny_encoder, batch_size=64)
    probe = DeviceBudget(1 << 40)
    assert budgeted(probe, fit_batch_size)(tower, SIZE, 64) == 64
    device = DeviceBudget(probe.peak + probe.peak // 4)
    assert budgeted(device, fit_batch_size)(tower, SIZE, 64) == 64
    assert budgeted(device, fit_batch_size)(tower, SIZE, 64, probe.peak // 2) < 64


def test_cuda_pipeline_fits_from_the_encoders_batch_size(
    tiny_encoder: CLIPEncoder, monkeypatch: pytest.MonkeyPatch
) -> None:
    """On CUDA the fit started at 1024 whatever CLIPEncoder(batch_size=…) said."""
    tower = Tower(tiny_encoder, batch_size=48, device="cuda:0")  # only the fit sees the device
    starts: list[tuple[int, int]] = []
    monkeypatch.setattr(
        pipeline,
        "fit_batch_size",
        lambda enc, size, start, reserve: starts.append((start, reserve)) or start,
    )
    monkeypatch.setattr(pipeline, "default_decode_budget", lambda device: 3 * GiB)
    assert GPUImagePipeline(tower).batch_size == 48  # type: ignore[arg-type]
    assert starts == [(48, 3 * GiB)]


def test_clip_encoder_batch_size_bounds_the_device_pipeline(tmp_path: Path) -> None:
    folder = mb.save_model_dir(tmp_path / "m", mb.causal_cfg())
    encoder = CLIPEncoder(f"local-dir:{folder}", device="cpu", batch_size=3, device_pipeline=True)
    assert encoder.uses_device_pipeline
    rows: list[int] = []
    real = encoder.embed_pixels
    encoder.embed_pixels = lambda p: rows.append(len(p)) or real(p)  # type: ignore[method-assign]
    encoder.try_embed_images([_jpeg(seed=s) for s in range(7)])
    assert rows == [3, 3, 1]


# --- host copies: pinned and non-blocking, or blocking; no torch.tensor(device=…) per group --


def test_to_cuda_pins_then_copies_without_blocking(monkeypatch: pytest.MonkeyPatch) -> None:
    events: list[tuple[str, Any]] = []

    def pin_memory(self: torch.Tensor) -> torch.Tensor:
        events.append(("pin", None))
        return self

    def to(self: torch.Tensor, *args: Any, **kwargs: Any) -> torch.Tensor:
        events.append(("to", kwargs.get("non_blocking", False)))
        return self

    monkeypatch.setattr(torch.Tensor, "pin_memory", pin_memory)
    monkeypatch.setattr(torch.Tensor, "to", to)
    to_device(torch.zeros(3), torch.device("cuda", 0))
    assert events == [("pin", None), ("to", True)]


def test_preprocess_makes_no_device_tensor_from_host_data(monkeypatch: pytest.MonkeyPatch) -> None:
    real_tensor, real_to = torch.tensor, torch.Tensor.to
    made: list[Any] = []
    copies: list[tuple[bool, bool]] = []

    def tensor(*args: Any, **kwargs: Any) -> torch.Tensor:
        made.append(kwargs.get("device"))
        return real_tensor(*args, **kwargs)

    def to(self: torch.Tensor, *args: Any, **kwargs: Any) -> torch.Tensor:
        copies.append((bool(kwargs.get("non_blocking")), self.is_pinned()))
        return real_to(self, *args, **kwargs)

    monkeypatch.setattr(torch, "tensor", tensor)
    monkeypatch.setattr(torch.Tensor, "to", to)
    spec = PreprocessSpec(32, (0.5, 0.5, 0.5), (0.25, 0.25, 0.25))
    sizes = [(40, 50), (30, 20), (40, 50), (30, 20)]  # two groups, interleaved
    images = [torch.randint(0, 255, (3, h, w), dtype=torch.uint8) for h, w in sizes]
    out = preprocess_batch(images, spec)
    assert made and all(device is None for device in made)
    assert all(pinned for non_blocking, pinned in copies if non_blocking)
    for image, row in zip(images, out, strict=True):  # rows back in input order
        assert torch.equal(row, preprocess_batch([image], spec)[0])


def test_no_non_blocking_copy_from_pageable_memory(
    tiny_encoder: CLIPEncoder, monkeypatch: pytest.MonkeyPatch
) -> None:
    real_to = torch.Tensor.to
    copies: list[bool] = []

    def to(self: torch.Tensor, *args: Any, **kwargs: Any) -> torch.Tensor:
        if kwargs.get("non_blocking"):
            copies.append(self.is_pinned())
        return real_to(self, *args, **kwargs)

    monkeypatch.setattr(torch.Tensor, "to", to)
    datas = [_jpeg(seed=s) for s in range(3)]
    tiny_encoder.embed_images(datas)  # the CPU path: stacked, pageable pixels
    GPUImagePipeline(tiny_encoder).embed(datas)
    assert all(copies)


# --- host read-ahead bounded by bytes ----------------------------------------------------------


def test_read_ahead_is_bounded_by_bytes() -> None:
    from concurrent.futures import ThreadPoolExecutor

    item = 1 << 20  # each input waits as 1 MiB of decoded pixels

    def read(i: int) -> Loaded:
        return Loaded(str(i), pixels=torch.zeros(item, dtype=torch.uint8))

    with ThreadPoolExecutor(2) as pool:
        reads = ReadAhead(pool, read, list(range(40)), max_items=30, max_bytes=4 * item, workers=2)
        time.sleep(0.3)  # let the readers run as far as they may
        assert reads.held_bytes <= 4 * item + 2 * item  # the limit, plus what was in flight
        order: list[int] = []
        while batch := reads.take(10):
            assert len(batch) <= 4  # a batch stops at max_bytes too
            order += [i for i, _ in batch]
        reads.close()
    assert order == list(range(40))


def test_memory_module_has_no_cuda_call_off_cuda() -> None:
    memory.release_cached(torch.device("cpu"))  # a no-op, not an error, without CUDA
