"""Scale-out: `index_with_ray` throughput with 1 and 2 workers, and Chroma's write ceiling.

- **Ray throughput**: synthetic JPEGs (320x240) indexed by `index_with_ray` into a fresh
  collection on a real `chroma run` server, on a local Ray cluster of this machine's CPUs,
  with the demo model and ViT-B-32 (random weights: the same cost as trained ones). The rate
  is images over the whole job's wall time, actor start and model loads included.
  Single-process `ImageIndex.index_folder` on the same folder is the reference.
- **Chroma write ceiling**: precomputed unit vectors (512-d, with the metadata a record
  carries) written through `ImageIndex.writer()` in batches of 1,024 by 1 and by 2 writer
  processes at once: the rate no number of GPUs can push a single Chroma node past.

Run: `python -m benchmarks.ray_bench [--smoke]`; writes `.bench/ray.json`.
"""

from __future__ import annotations

import multiprocessing
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks._common import encoder_for, machine_header, parse_sizes
from benchmarks._compare import write_json
from benchmarks.images import bench_dir, make_jpegs

__all__ = ["chroma_server", "ray_rate", "run", "write_ceiling"]

SIZES = {"demo-images": (1000, 40), "vit-images": (200, 8), "vectors": (40000, 2000)}
WRITE_BATCH = 1024


@contextmanager
def chroma_server() -> Iterator[tuple[str, int]]:
    """A `chroma run` on loopback, in a temporary folder, stopped afterwards."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = int(s.getsockname()[1])
    chroma = str(Path(sys.executable).with_name("chroma"))
    with tempfile.TemporaryDirectory() as tmp:
        cmd = [chroma, "run", "--path", tmp, "--host", "127.0.0.1", "--port", str(port)]
        proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            _wait(f"http://127.0.0.1:{port}/api/v2/heartbeat")
            yield "127.0.0.1", port
        finally:
            proc.terminate()
            proc.wait(timeout=30)


def _wait(url: str, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=1):
                return
        except OSError:
            time.sleep(0.2)
    raise RuntimeError(f"chroma did not answer at {url}")


def saved_model(model: str, folder: Path) -> str:
    """The model name every worker loads to the same weights: the demo model, or the
    architecture's random weights saved once as a `local-dir:` folder (a random model loaded
    in each actor would be a different model each time)."""
    from clip_multimodal.models import DEMO_MODEL
    from clip_multimodal.training import save_local_dir

    if model == "demo":
        return DEMO_MODEL
    import open_clip

    encoder = encoder_for(model)
    preprocess = dict(encoder.model.visual.preprocess_cfg)
    config = open_clip.get_model_config(model)
    return f"local-dir:{save_local_dir(encoder.model, config, preprocess, folder, model)}"


def ray_rate(
    folder: Path, n: int, model: str, workers: int, server: tuple[str, int], batch: int
) -> float:
    """Images/s of one `index_with_ray` job (everything new) with `workers` actors."""
    from clip_multimodal.distributed import index_with_ray
    from clip_multimodal.models import ModelSpec

    spec = ModelSpec(model, None, device="cpu")
    cpus = ((os.cpu_count() or 2) - 1) / workers  # the actors, and one CPU for the reads
    start = time.perf_counter()
    report = index_with_ray(
        folder,
        f"ray-{uuid.uuid4().hex[:12]}",
        model=spec,
        host=server[0],
        port=server[1],
        batch_size=batch,
        num_workers=workers,
        num_cpus_per_worker=cpus,
        progress=False,
    )
    seconds = time.perf_counter() - start
    if report.added != n or report.failed:
        raise RuntimeError(f"the Ray job indexed {report} for {n} images")
    return n / seconds


def single_rate(folder: Path, n: int, model: str, server: tuple[str, int]) -> float:
    """Images/s of single-process `index_folder` on the same folder and server (model load
    included, as in a Ray job)."""
    from clip_multimodal import CLIPEncoder
    from clip_multimodal.index import ImageIndex

    start = time.perf_counter()
    encoder = CLIPEncoder(model, None, device="cpu")
    index = ImageIndex(encoder, f"one-{uuid.uuid4().hex[:12]}", host=server[0], port=server[1])
    report = index.index_folder(folder, progress=False)
    seconds = time.perf_counter() - start
    if report.added != n or report.failed:
        raise RuntimeError(f"index_folder indexed {report} for {n} images")
    return n / seconds


def _write_vectors(server: tuple[str, int], name: str, vectors: np.ndarray, first: int) -> None:
    from clip_multimodal.index import ImageIndex, ImageRecord
    from clip_multimodal.testing import FakeEncoder

    index = ImageIndex(FakeEncoder(dim=vectors.shape[1]), name, host=server[0], port=server[1])
    with index.writer() as writer:
        for start in range(0, len(vectors), WRITE_BATCH):
            rows = vectors[start : start + WRITE_BATCH]
            writer.put(
                ImageRecord(
                    f"v{first + start + i}",
                    row,
                    {
                        "mime": "image/jpeg",
                        "width": 320,
                        "height": 240,
                        "size": 20000,
                        "sha256": uuid.uuid4().hex,
                        "modality": "image",
                    },
                    f"/data/images/{first + start + i}.jpg",
                )
                for i, row in enumerate(rows)
            )


def write_ceiling(server: tuple[str, int], n: int, writers: int) -> float:
    """Vectors/s that `writers` processes store into one collection at once."""
    rng = np.random.default_rng(0)
    vectors = rng.standard_normal((n, 512)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    name = f"ceiling-{uuid.uuid4().hex[:12]}"
    _write_vectors(server, name, vectors[:1], n)  # create the collection before the clock
    parts = np.array_split(np.arange(n), writers)
    context = multiprocessing.get_context("spawn")
    procs = [
        context.Process(target=_write_vectors, args=(server, name, vectors[p], int(p[0])))
        for p in parts
    ]
    start = time.perf_counter()
    for proc in procs:
        proc.start()
    for proc in procs:
        proc.join()
    seconds = time.perf_counter() - start
    if any(proc.exitcode for proc in procs):
        raise RuntimeError("a writer process failed")
    return n / seconds


def run(argv: list[str] | None = None) -> dict[str, Any]:
    args = parse_sizes(argv, __doc__ or "", SIZES)
    import ray

    info = machine_header(" (Ray local cluster on every CPU; a real `chroma run` server)")
    ray.init(num_cpus=os.cpu_count() or 2, include_dashboard=False, log_to_driver=False)
    results: dict[str, Any] = {"ray": {}, "chroma_write_ceiling": {}}
    try:
        with chroma_server() as server, tempfile.TemporaryDirectory() as tmp:
            for name, n in (("demo", args.demo_images), ("ViT-B-32", args.vit_images)):
                folder = _folder_of(make_jpegs(n, size=(320, 240)), Path(tmp) / name)
                model = saved_model(name, Path(tmp) / f"{name}-weights")
                rate = single_rate(folder, n, model, server)
                results["ray"][f"{name}, index_folder (one process)"] = rate
                print(f"index_folder {name}, one process: {rate:,.1f} img/s ({n} images)")
                for workers in (1, 2):
                    batch = 32 if name == "demo" else 16
                    rate = ray_rate(folder, n, model, workers, server, batch)
                    results["ray"][f"{name}, {workers} worker(s)"] = rate
                    print(
                        f"index_with_ray {name}, {workers} worker(s): {rate:,.1f} img/s ({n} images)"
                    )
            for writers in (1, 2):
                rate = write_ceiling(server, args.vectors, writers)
                results["chroma_write_ceiling"][f"{writers} writer(s)"] = rate
                print(f"Chroma server writes, {writers} writer process(es): {rate:,.0f} vectors/s")
    finally:
        ray.shutdown()
    write_json(bench_dir() / "ray.json", {"machine": info, **results})
    return results


def _folder_of(paths: list[Path], folder: Path) -> Path:
    """A folder holding exactly these images (the cache may hold more, from larger runs)."""
    folder.mkdir(parents=True)
    for path in paths:
        shutil.copyfile(path, folder / path.name)
    return folder


if __name__ == "__main__":
    run()
