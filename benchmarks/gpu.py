"""The GPU check: model-only MFU, files→embeddings, files→Chroma, against the naive GPU loop.

The one prepared script for a lent GPU (an H100 or H200: all figures in well under 10
minutes), printing every figure and writing JSON to $OUT (when set) and to .bench/gpu.json.
ViT-B-32 with random weights; nothing is downloaded. `--smoke` runs the same code on the CPU
at tiny sizes (tests/test_benchmarks.py). Each section, and each measurement inside one,
reports its figure even when another fails. The run exits 1 unless the gate holds: every
pipeline embedding within cosine 0.9999 of the CPU path's (nvJPEG's pixels are not PIL's;
the embeddings must agree). The throughput goals are reported, not gated.

Figures, each against its goal from issue 8:

- **model-only MFU**: the bf16 image tower on pixels already on the GPU, at the best of a
  few batch sizes; 8.82 GFLOP/image for ViT-B-32 at 224 (torch's FlopCounterMode, also
  reported, misses the fused attention), peak from the card's name (H100 SXM: 989 TFLOP/s
  dense bf16). Goal ≥ 0.35. The top kernels of one forward pass show what bounds it.
- **files→embeddings**: `GPUImagePipeline.embed_files` on 2,048 generated 640x480 JPEGs
  (page cache warm), with the stage rates that bound it (read, decode+preprocess, model),
  nvJPEG's pixel difference to PIL and the embeddings' cosine to the CPU-decoded reference.
  Goal ≥ 8,000 img/s and ≥ 300x the naive loop.
- **naive GPU loop**: LlamaIndex `ClipEmbedding`'s shape: one image at a time, fp32, PIL
  decode and open_clip preprocess on the CPU, `encode_image` under no_grad, `.tolist()`.
- **files→Chroma**: `GPUImagePipeline.add_to_index` into an embedded Chroma, and, in the
  same run, Chroma's own ingest of the same precomputed vectors and metadata (raw
  `collection.add` in max-size batches). Goal: within 10% of Chroma's own rate.

Needs on the GPU machine: torch, torchvision, pillow, numpy (in its image) and, carried as
wheels (`WHEELS` below: what this project imports that the image lacks), open_clip_torch
(+ ftfy, wcwidth) and, for the Chroma figure, chromadb and the modules it imports; without
chromadb the Chroma figure is reported as skipped and the rest runs. On the lent machine:

    # here, once: python -m benchmarks.gpu --print-wheels | sh      (fills .whl/, ignored)
    # there, as one run with carry [".whl"]:
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
        --target /tmp/site .whl/*.whl && export PYTHONPATH=/tmp/site || exit; \
        PYTHONUNBUFFERED=1 python3 -m benchmarks.gpu

Run: `python -m benchmarks.gpu [--images 2048] [--smoke] [--compile]`.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
import traceback
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch

from benchmarks._machine import machine_info
from benchmarks.images import bench_dir, make_jpegs

GFLOP_VIT_B32 = 8.82  # per 224x224 image, forward, 2 FLOPs per multiply-add
# Dense bf16 tensor-core peaks, TFLOP/s, by whole words of torch.cuda.get_device_name().
PEAK_BF16_TFLOPS = {
    "H200": 989.0,
    "H100 NVL": 835.0,
    "H100 PCIe": 756.0,
    "H100": 989.0,  # SXM (e.g. "NVIDIA H100 80GB HBM3")
    "GH200": 989.0,
    "B200": 2250.0,
    "A100": 312.0,
    "H200 NVL": 835.0,
    "L40S": 362.0,
    "L40": 181.0,
    "L4": 121.0,
    "A10G": 70.0,
    "RTX 4090": 165.0,
}
# Wheels the lent machine's image lacks (its package list: .library/device/KINDS.md), for
# CPython 3.12 manylinux: the core's open_clip, then what chromadb imports for an embedded
# client (found by importing it and listing sys.modules' distributions).
WHEELS = [
    "open_clip_torch==3.3.0",
    "ftfy==6.3.1",
    "wcwidth==0.9.4",
    "chromadb==1.5.9",
    "pydantic==2.14.4",
    "pydantic_core==2.50.5",
    "pydantic-settings==2.16.3",
    "annotated-types==0.8.0",
    "typing-inspection==0.4.5",
    "python-dotenv==1.2.4",
    "pybase64==1.5.1",
    "orjson==3.13.0",
    "overrides==7.7.0",
    "tenacity==9.2.1",
    "jsonschema==4.26.0",
    "jsonschema-specifications==2025.9.1",
    "jsonpointer==3.12",
    "referencing==0.37.0",
    "rpds-py==2026.9.1",
    "opentelemetry-api==1.45.2",
    "opentelemetry-sdk==1.45.2",
    "opentelemetry-proto==1.45.2",
    "opentelemetry-semantic-conventions==0.66b2",
    "opentelemetry-exporter-otlp-proto-common==1.45.2",
    "opentelemetry-exporter-otlp-proto-grpc==1.45.2",
    "googleapis-common-protos==1.76.0",
    "zstandard==0.25.0",
    "defusedxml==0.7.1",
]
PLATFORMS = [f"manylinux_2_{n}_x86_64" for n in (28, 27, 17)] + [
    "manylinux2014_x86_64",
    "manylinux1_x86_64",
]
GOALS = {"files_per_s": 8000.0, "vs_naive": 300.0, "mfu": 0.35, "chroma_share": 0.9}
# nvJPEG's pixels differ from PIL's (4:2:0 chroma upsampling); what may not differ is the
# embedding: each image's pipeline vector within this cosine of the CPU path's.
GATE_COSINE = 0.9999


def log(message: str) -> None:
    print(message, flush=True)


def peak_tflops(name: str | None) -> float | None:
    """The card's dense bf16 peak, by name (longest match first); None if unknown.

    Keys match whole words only: a substring test read "L40" as "L4" and "H200 NVL" as "H200".
    """
    if not name:
        return None
    words = f" {' '.join(name.split())} "
    for key in sorted(PEAK_BF16_TFLOPS, key=len, reverse=True):
        if f" {key} " in words:
            return PEAK_BF16_TFLOPS[key]
    return None


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(fn: Callable[[], Any], device: torch.device, repeats: int) -> list[float]:
    """Seconds per call, device work included."""
    out = []
    for _ in range(repeats):
        sync(device)
        start = time.perf_counter()
        fn()
        sync(device)
        out.append(time.perf_counter() - start)
    return out


# --- model only ------------------------------------------------------------------------


def image_flops(model: Any, device: torch.device, dtype: torch.dtype, size: int) -> float:
    """FLOPs of one image through the image tower, counted by torch.

    An undercount for open_clip's towers: the fused multi-head attention that
    `nn.MultiheadAttention` runs at inference is not counted (ViT-B-32: 5.89 of 8.82 GFLOP).
    """
    from torch.utils.flop_counter import FlopCounterMode

    pixels = torch.zeros((1, 3, size, size), device=device, dtype=dtype)
    counter = FlopCounterMode(display=False)
    with torch.inference_mode(), counter:
        model.encode_image(pixels)
    return float(counter.get_total_flops())


def with_native_norms(model: Any) -> Any:
    """A copy whose LayerNorms run in the activations' dtype (one kernel, fp32 inside).

    open_clip's low-precision towers use LayerNormFp32, which casts every activation to
    fp32 and back around each norm: two extra memory passes, 25 times per image tower.
    torch's CUDA layer_norm accumulates in fp32 anyway.
    """
    import copy

    from open_clip.transformer import LayerNormFp32

    variant = copy.deepcopy(model)
    dtype = next(variant.visual.conv1.parameters()).dtype
    for module in variant.modules():
        if isinstance(module, LayerNormFp32):
            module.__class__ = torch.nn.LayerNorm
            module.to(dtype)
    return variant


def _rates(
    forward: Any, batches: Sequence[int], size: int, dtype: Any, device: Any, repeats: int
) -> dict[int, float]:
    rates: dict[int, float] = {}
    for batch in batches:
        try:
            pixels = torch.randn((batch, 3, size, size), device=device).to(dtype)
            with torch.inference_mode():
                for _ in range(2):
                    forward(pixels)
                seconds = timed(partial(forward, pixels), device, repeats)
            rates[batch] = batch / statistics.median(seconds)
            log(f"    batch {batch}: {rates[batch]:,.0f} img/s")
        except torch.cuda.OutOfMemoryError:
            torch.cuda.empty_cache()
            log(f"    batch {batch}: out of memory")
    return rates


def model_only(
    encoder: Any, batches: Sequence[int], repeats: int, compile_model: bool
) -> dict[str, Any]:
    """Image tower throughput on device-resident pixels, per variant and batch; MFU at best.

    Variants: open_clip's model as the encoder runs it; the same weights with native-dtype
    LayerNorms; with --compile, that one under torch.compile. Each variant's cosine to the
    first on the same batch shows it computes the same embeddings.
    """
    device, dtype, size = encoder.device, encoder.input_dtype, _input_size(encoder)
    counted = image_flops(encoder.model, device, dtype, size)
    vit_b32 = encoder.model_name == "ViT-B-32" and size == 224
    flops = GFLOP_VIT_B32 * 1e9 if vit_b32 else counted
    native = with_native_norms(encoder.model)
    variants = {"open_clip": encoder.model.encode_image, "native norms": native.encode_image}
    if compile_model:
        variants["native norms, compiled"] = torch.compile(native.encode_image)
    probe = torch.randn((8, 3, size, size), device=device).to(dtype)
    with torch.inference_mode():
        reference = torch.nn.functional.normalize(encoder.model.encode_image(probe).float(), dim=-1)
    by_variant: dict[str, dict[int, float]] = {}
    agreement: dict[str, float] = {}
    for name, forward in variants.items():
        log(f"  {name}:")
        by_variant[name] = _rates(forward, batches, size, dtype, device, repeats)
        with torch.inference_mode():
            out = torch.nn.functional.normalize(forward(probe).float(), dim=-1)
        agreement[name] = float((out * reference).sum(dim=-1).min())
    best_name, best = max(
        ((n, b) for n, r in by_variant.items() for b in r), key=lambda nb: by_variant[nb[0]][nb[1]]
    )
    card = torch.cuda.get_device_name(device) if device.type == "cuda" else None
    peak = peak_tflops(card)
    rate = by_variant[best_name][best]
    achieved = rate * flops / 1e12
    return {
        "gflop_per_image": flops / 1e9,
        "gflop_per_image_counted_by_torch": counted / 1e9,
        "img_per_s_by_variant_and_batch": by_variant,
        "cosine_min_vs_open_clip": agreement,
        "best_variant": best_name,
        "best_batch": best,
        "img_per_s": rate,
        "achieved_tflops": achieved,
        "peak_tflops": peak,
        "mfu": achieved / peak if peak else None,
        "mfu_open_clip_as_is": (
            max(by_variant["open_clip"].values()) * flops / 1e12 / peak
            if peak and by_variant["open_clip"]
            else None
        ),
        "profile": _profile(variants[best_name], best, device, dtype, size),
    }


def _input_size(encoder: Any) -> int:
    from clip_multimodal.gpu import PreprocessSpec

    return PreprocessSpec.from_transform(encoder.preprocess).size


def _profile(
    forward: Any, batch: int, device: torch.device, dtype: torch.dtype, size: int
) -> list[str]:
    """The top kernels of one forward pass: what bounds the tower (GEMMs vs the rest)."""
    if device.type != "cuda":
        return []
    from torch.profiler import ProfilerActivity, profile

    pixels = torch.randn((batch, 3, size, size), device=device).to(dtype)
    try:
        with torch.inference_mode(), profile(activities=[ProfilerActivity.CUDA]) as prof:
            forward(pixels)
            sync(device)
        events = prof.key_averages()
        key = "device_time_total" if hasattr(events[0], "device_time_total") else "cuda_time_total"
        table: str = events.table(sort_by=key, row_limit=12)
    except Exception as exc:  # the profile explains a figure; it must not cost one
        return [f"profiler failed: {type(exc).__name__}: {exc}"]
    return table.splitlines()


# --- the naive loop and the reference ---------------------------------------------------


def naive_loop(encoder: Any, paths: Sequence[Path]) -> float:
    """LlamaIndex ClipEmbedding's shape, fp32, one image at a time; img/s."""
    import copy

    from PIL import Image

    model = copy.deepcopy(encoder.model).float()  # the same weights, in fp32
    device = encoder.device

    def run() -> list[list[float]]:
        out = []
        for path in paths:
            with torch.no_grad():
                image = encoder.preprocess(Image.open(path)).unsqueeze(0).to(device)
                out.append(model.encode_image(image).tolist()[0])
        return out

    run_short = paths[: max(1, len(paths) // 8)]
    for path in run_short:  # warm up kernels and caches
        with torch.no_grad():
            model.encode_image(encoder.preprocess(Image.open(path)).unsqueeze(0).to(device))
    seconds = timed(run, device, 1)[0]
    return len(paths) / seconds


def reference_encoder(encoder: Any) -> Any:
    """The same model with the device pipeline off: on CUDA, CLIPEncoder turns the pipeline on
    by itself, and the reference must decode with PIL on the CPU, not measure the pipeline."""
    from clip_multimodal import CLIPEncoder

    return CLIPEncoder.from_spec(encoder.spec, device_pipeline=False)


def reference_rate(encoder: Any, paths: Sequence[Path]) -> tuple[float, np.ndarray]:
    """CLIPEncoder's CPU-decode path: threaded PIL decode + preprocess on the CPU, bf16 tower.

    `encoder` must have its device pipeline off (`reference_encoder`)."""
    encoder.embed_images(paths[: encoder.batch_size])
    start = time.perf_counter()
    vectors = encoder.embed_images(paths)
    return len(paths) / (time.perf_counter() - start), vectors


# --- the pipeline ------------------------------------------------------------------------


def read_rate(paths: Sequence[Path], workers: int) -> float:
    start = time.perf_counter()
    with ThreadPoolExecutor(workers) as pool:
        list(pool.map(Path.read_bytes, paths))
    return len(paths) / (time.perf_counter() - start)


def decode_rate(pipe: Any, paths: Sequence[Path]) -> float:
    """Decode + preprocess alone (no model), at the pipeline's batch size."""
    from clip_multimodal.gpu.decode import load_payload

    datas = [load_payload(p) for p in paths]
    size = pipe.batch_size
    batches = [list(enumerate(datas[i : i + size])) for i in range(0, len(datas), size)]
    stream = torch.cuda.Stream(pipe.device) if pipe.device.type == "cuda" else None
    pipe._prepare(batches[0], stream)
    sync(pipe.device)
    start = time.perf_counter()
    for batch in batches:
        pipe._prepare(batch, stream)
    sync(pipe.device)
    return len(paths) / (time.perf_counter() - start)


def pixel_fidelity(device: torch.device, paths: Sequence[Path]) -> dict[str, float]:
    """The device JPEG decoder's pixels against PIL's (the reference decoder)."""
    from clip_multimodal.gpu.decode import JpegDecoder
    from clip_multimodal.images import load_image

    decoded = JpegDecoder(device).decode([p.read_bytes() for p in paths])
    diffs, means = [], []
    for path, pixels in zip(paths, decoded, strict=True):
        if pixels is None:
            raise RuntimeError(f"the device decoder refused {path}")
        ref = torch.from_numpy(np.array(load_image(path))).permute(2, 0, 1)
        diff = (pixels.cpu().int() - ref.int()).abs()
        diffs.append(int(diff.max()))
        means.append(float(diff.float().mean()))
    return {"max_abs_level": max(diffs), "mean_abs_level": float(np.mean(means))}


def pipeline_figures(
    encoder: Any, paths: Sequence[Path], workers: int, figures: dict[str, Any]
) -> Any:
    """Files→embeddings end to end into `figures`; returns the result (the vectors)."""
    from clip_multimodal.gpu import GPUImagePipeline

    pipe = GPUImagePipeline(encoder, read_workers=workers)
    figures["batch_size"] = pipe.batch_size
    figures["decode_budget_bytes"] = pipe.decode_budget
    log(f"  pipeline batch size: {pipe.batch_size}, decode budget {pipe.decode_budget:,} B")
    pipe.embed_files(paths[: pipe.batch_size])  # warm up nvJPEG, kernels, page cache
    sync(encoder.device)
    start = time.perf_counter()
    result = pipe.embed_files(paths)
    sync(encoder.device)
    rate = len(paths) / (time.perf_counter() - start)
    if result.errors:
        raise RuntimeError(f"pipeline failed on {list(result.errors.values())[:3]}")
    figures["img_per_s"] = rate
    log(f"  files→embeddings: {rate:,.0f} img/s")
    return result, pipe


# --- Chroma ------------------------------------------------------------------------------


def chroma_figures(encoder: Any, paths: Sequence[Path]) -> dict[str, Any]:
    """Files→Chroma through the pipeline, and Chroma's own ingest of the same records."""
    try:
        import chromadb
        from chromadb.config import Settings
    except ImportError as exc:
        return {"skipped": f"chromadb is not installed here ({exc})"}
    from clip_multimodal import ImageIndex
    from clip_multimodal.gpu import GPUImagePipeline
    from clip_multimodal.index import read_image_source

    pipe = GPUImagePipeline(encoder)
    with tempfile.TemporaryDirectory(prefix="clip-mm-gpu-") as folder:
        settings = Settings(anonymized_telemetry=False)
        client = chromadb.PersistentClient(folder, settings=settings)
        warm = ImageIndex(encoder, collection="warmup", client=client)
        pipe.add_to_index(warm, paths[: min(len(paths), 256)])
        index = ImageIndex(encoder, collection="pipeline", client=client)
        start = time.perf_counter()
        report = pipe.add_to_index(index, paths)
        ours = len(paths) / (time.perf_counter() - start)
        if report.failed or index.count() != len(paths):
            raise RuntimeError(f"files→Chroma stored {index.count()} of {len(paths)}")
        log(f"  files→Chroma: {ours:,.0f} img/s")
        figures: dict[str, Any] = {"img_per_s": ours}
        own = measure(
            figures,
            "Chroma's own ingest",
            lambda: _chroma_own_rate(client, index, paths, read_image_source),
        )
        if own:
            log(f"  Chroma's own ingest of the same records: {own:,.0f} vectors/s")
            figures.update(chroma_own_vectors_per_s=own, share=ours / own)
    return figures


def _chroma_own_rate(client: Any, index: Any, paths: Sequence[Path], read_source: Any) -> float:
    sources = [read_source(p) for p in paths]
    ids = [s.sha256 for s in sources]
    got = index.get(ids, include_embeddings=True)
    by_id = {r.id: r for r in got}
    vectors = np.stack([by_id[i].embedding for i in ids]).astype(np.float32)
    metadatas = [s.metadata() for s in sources]
    uris = [s.uri for s in sources]
    raw = client.create_collection("raw", configuration={"hnsw": {"space": "cosine"}})
    step = max(1, int(client.get_max_batch_size()))
    start = time.perf_counter()
    for i in range(0, len(ids), step):
        raw.add(
            ids=ids[i : i + step],
            embeddings=vectors[i : i + step],
            metadatas=metadatas[i : i + step],
            uris=uris[i : i + step],
        )
    return len(ids) / (time.perf_counter() - start)


# --- the run -----------------------------------------------------------------------------


def guarded(name: str, fn: Callable[[], dict[str, Any]]) -> dict[str, Any]:
    """One section's figures, or its error: one failure must not cost the other figures."""
    log(f"{name}:")
    try:
        return fn()
    except Exception as exc:  # reported in the table and the JSON; the run goes on
        traceback.print_exc()
        return {"error": f"{type(exc).__name__}: {exc}"}


def run(args: argparse.Namespace) -> dict[str, Any]:
    from clip_multimodal import CLIPEncoder

    cuda = torch.cuda.is_available() and not args.smoke
    device = "cuda" if cuda else "cpu"
    precision: Literal["bf16", "fp32"] = "bf16" if cuda else "fp32"
    workers = args.workers or min(16, os.cpu_count() or 1)
    log(f"device {device}; generating {args.images} JPEGs…")
    paths = make_jpegs(args.images, workers=workers)
    # The pipeline's batch starts at the encoder's batch size (halved while it does not fit).
    batch = 1024 if cuda else None
    encoder = CLIPEncoder(args.model, None, device=device, precision=precision, batch_size=batch)
    out: dict[str, Any] = {"machine": machine_info(), "images": len(paths), "device": device}
    out["model_only"] = guarded(
        "model only", lambda: model_only(encoder, args.batches, args.repeats, args.compile)
    )
    out["naive"] = guarded(
        "naive GPU loop (one image at a time, fp32)",
        lambda: {"img_per_s": naive_loop(encoder, paths[: args.naive])},
    )
    log(f"  {out['naive']}")
    out["pipeline"] = guarded("files→embeddings", lambda: pipeline_section(encoder, paths, args))
    naive = out["naive"].get("img_per_s")
    if naive and "img_per_s" in out["pipeline"]:
        out["pipeline"]["vs_naive"] = out["pipeline"]["img_per_s"] / naive
    out["chroma"] = guarded("files→Chroma", lambda: chroma_figures(encoder, paths[: args.chroma]))
    out["goals"] = goals(out)
    out["gates"] = gates(out)
    return out


def measure(figures: dict[str, Any], name: str, fn: Callable[[], Any]) -> Any:
    """`fn()`, or None with its error kept in `figures["errors"][name]`: a failed
    sub-measurement must not discard the figures already measured, nor the later ones."""
    try:
        return fn()
    except Exception as exc:  # reported in the table and the JSON; the section goes on
        traceback.print_exc()
        figures.setdefault("errors", {})[name] = f"{type(exc).__name__}: {exc}"
        log(f"  {name} failed: {type(exc).__name__}: {exc}")
        return None


def pipeline_section(
    encoder: Any, paths: Sequence[Path], args: argparse.Namespace
) -> dict[str, Any]:
    """Pipeline rate and stages, the CPU-decode reference rate, and the fidelity figures,
    each measured on its own."""
    workers = args.workers or min(16, os.cpu_count() or 1)
    figures: dict[str, Any] = {}
    result, pipe = measure(
        figures, "files→embeddings", lambda: pipeline_figures(encoder, paths, workers, figures)
    ) or (None, None)
    stages: dict[str, float] = {}
    figures["stages"] = stages
    read = measure(figures, "read stage", lambda: read_rate(paths, workers))
    if read is not None:
        stages["read_img_per_s"] = read
    decode = pipe and measure(figures, "decode stage", lambda: decode_rate(pipe, paths))
    if decode:
        stages["decode_preprocess_img_per_s"] = decode
    log(f"  stages: {stages}")
    ref_paths = paths[: args.reference]
    reference = measure(
        figures,
        "CPU-decode reference",
        lambda: reference_rate(reference_encoder(encoder), ref_paths),
    )
    fidelity: dict[str, float] = {}
    figures["fidelity"] = fidelity
    if reference is not None:
        figures["reference_img_per_s"], ref = reference
        log(f"  CLIPEncoder (CPU decode, bf16 tower): {figures['reference_img_per_s']:,.0f} img/s")
        if result is not None:
            fidelity.update(embedding_agreement(result.vectors[: len(ref_paths)], ref))
    pixels = measure(figures, "pixel fidelity", lambda: pixel_fidelity(encoder.device, paths[:16]))
    fidelity.update(pixels or {})
    return figures


def embedding_agreement(ours: np.ndarray, reference: np.ndarray) -> dict[str, float]:
    """Cosine of each pipeline embedding to the CPU path's, row by row (min and mean)."""
    cosine = (ours * reference).sum(axis=1)
    return {
        "cosine_min_vs_cpu_decode": float(cosine.min()),
        "cosine_mean_vs_cpu_decode": float(cosine.mean()),
    }


def gates(out: dict[str, Any]) -> dict[str, bool | None]:
    """The pass/fail checks (the run's exit status): the pipeline's embeddings agree with
    the CPU path's to cosine >= 0.9999; None where the figure is missing (a failure too)."""
    cosine = out["pipeline"].get("fidelity", {}).get("cosine_min_vs_cpu_decode")
    key = f"embeddings vs CPU path cosine min >= {GATE_COSINE}"
    return {key: None if cosine is None else cosine >= GATE_COSINE}


def exit_status(out: dict[str, Any]) -> int:
    """0 when every gate passed, 1 otherwise (a failed or missing figure included)."""
    return 0 if all(out.get("gates", {}).values()) and out.get("gates") else 1


def goals(out: dict[str, Any]) -> dict[str, bool | None]:
    """Each goal of issue 8 met, missed, or None where its figure is missing."""
    p, m, c = out["pipeline"], out["model_only"], out["chroma"]

    def check(value: float | None, target: float) -> bool | None:
        return None if value is None else value >= target

    return {
        "files→embeddings >= 8000 img/s": check(p.get("img_per_s"), GOALS["files_per_s"]),
        "files→embeddings >= 300x naive": check(p.get("vs_naive"), GOALS["vs_naive"]),
        "model-only MFU >= 0.35": check(m.get("mfu"), GOALS["mfu"]),
        "files→Chroma >= 0.9x Chroma's own": check(c.get("share"), GOALS["chroma_share"]),
    }


def _num(value: Any, spec: str = ",.0f") -> str:
    return "—" if value is None else format(value, spec)


def report(out: dict[str, Any]) -> str:
    m, p, c = out["model_only"], out["pipeline"], out["chroma"]
    stages, fid = p.get("stages", {}), p.get("fidelity", {})
    rows = [
        (
            f"model-only img/s (bf16, {m.get('best_variant')}, batch {m.get('best_batch')})",
            _num(m.get("img_per_s")),
            "",
        ),
        (
            "model-only MFU, open_clip as the encoder runs it",
            _num(m.get("mfu_open_clip_as_is"), ".3f"),
            "",
        ),
        (
            f"model-only MFU ({_num(m.get('gflop_per_image'), '.2f')} GFLOP/img, "
            f"peak {m.get('peak_tflops')} TFLOP/s)",
            _num(m.get("mfu"), ".3f"),
            "≥ 0.35",
        ),
        (
            "naive GPU loop (fp32, one at a time), img/s",
            _num(out["naive"].get("img_per_s"), ",.1f"),
            "",
        ),
        ("CLIPEncoder: CPU decode → bf16 tower, img/s", _num(p.get("reference_img_per_s")), ""),
        ("files→embeddings (pipeline), img/s", _num(p.get("img_per_s")), "≥ 8,000"),
        ("files→embeddings vs naive", _num(p.get("vs_naive")) + "×", "≥ 300×"),
        ("read stage alone, img/s", _num(stages.get("read_img_per_s")), ""),
        (
            "decode+preprocess stage alone, img/s",
            _num(stages.get("decode_preprocess_img_per_s")),
            "",
        ),
        (
            "embeddings vs CPU-decoded reference, cosine min",
            _num(fid.get("cosine_min_vs_cpu_decode"), ".5f"),
            "",
        ),
        ("device JPEG decode vs PIL, max level", _num(fid.get("max_abs_level"), "d"), ""),
        ("device JPEG decode vs PIL, mean level", _num(fid.get("mean_abs_level"), ".3f"), ""),
        ("files→Chroma (pipeline), img/s", _num(c.get("img_per_s")), ""),
        (
            "Chroma's own ingest, same records, vectors/s",
            _num(c.get("chroma_own_vectors_per_s")),
            "",
        ),
        ("files→Chroma / Chroma's own", _num(c.get("share"), ".2f"), "≥ 0.9"),
    ]
    lines = ["| figure | value | goal |", "| --- | --- | --- |"]
    lines += [f"| {label} | {value} | {goal} |" for label, value, goal in rows]
    problems = {
        k: out[k].get("error") or out[k].get("skipped")
        for k in ("model_only", "naive", "pipeline", "chroma")
    }
    lines += [f"\n{k}: {v}" for k, v in problems.items() if v]
    for section in ("pipeline", "chroma"):
        for name, error in out[section].get("errors", {}).items():
            lines.append(f"\n{section}, {name}: {error}")
    for gate, passed in out.get("gates", {}).items():
        verdict = "missing" if passed is None else "passed" if passed else "FAILED"
        lines.append(f"\ngate: {gate}: {verdict}")
    return "\n".join(lines)


def wheels_command() -> str:
    """The pip download line (per the device README) that fills .whl/ with WHEELS."""
    platforms = " ".join(f"--platform {p}" for p in PLATFORMS)
    return (
        "grep -qx '/.whl/' .git/info/exclude || echo /.whl/ >> .git/info/exclude; "
        "python3 -m pip download --no-deps --only-binary=:all: --python-version 3.12 "
        f"--implementation cp {platforms} -d .whl " + " ".join(WHEELS)
    )


def parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=2048)
    parser.add_argument("--model", default="ViT-B-32", help="architecture (random weights)")
    parser.add_argument("--naive", type=int, default=256, help="images for the naive loop")
    parser.add_argument("--reference", type=int, default=512, help="images for the CPU path")
    parser.add_argument("--chroma", type=int, default=2048, help="images for files→Chroma")
    parser.add_argument("--batches", type=int, nargs="+", default=[512, 1024, 2048, 4096])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--workers", type=int, default=0, help="reader threads (0: cores)")
    parser.add_argument("--compile", action="store_true", help="torch.compile the tower")
    parser.add_argument("--smoke", action="store_true", help="CPU, tiny sizes, to check it runs")
    parser.add_argument("--print-wheels", action="store_true", help="print the pip download")
    args = parser.parse_args(argv)
    if args.smoke:
        args.images, args.naive, args.reference, args.chroma = 6, 2, 3, 4
        args.batches, args.repeats = [2], 1
    return args


def main(argv: list[str] | None = None) -> dict[str, Any]:
    args = parse(argv)
    if args.print_wheels:
        print(wheels_command())
        return {}
    out = run(args)
    log("\n" + report(out))
    if out["model_only"].get("profile"):
        log("\nTop kernels of one model-only forward:\n" + "\n".join(out["model_only"]["profile"]))
    payload = json.dumps(out, indent=2, default=str)
    targets = [bench_dir() / ("gpu-smoke.json" if args.smoke else "gpu.json")]
    if os.environ.get("OUT"):
        targets.append(Path(os.environ["OUT"]) / "gpu.json")
    for target in targets:
        target.write_text(payload + "\n")
    log(f"\nwrote {', '.join(map(str, targets))}")
    return out


if __name__ == "__main__":
    sys.exit(exit_status(main(sys.argv[1:])))
