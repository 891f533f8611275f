"""`index_folder` against its floor, with a cheap model: the cost of the index's bookkeeping.

The demo model stands in for a GPU (where the model is cheap too), so reading, hashing, stat
calls, metadata and writes show. For each size, on the same small PNGs (generated once
under the temp folder), each run is its own subprocess (its peak RSS is its own), into a
fresh embedded Chroma:

- **ours**: `ImageIndex(encoder).index_folder(folder)`.
- **floor**: `encoder.embed_images(paths)` plus raw `collection.add` of the same records
  (ids, vectors, URIs and the metadata the index stores, computed before the timing), in
  chunks of 1,024 files: the model and Chroma's writes, nothing else.
- **re-index**: `index_folder` again on the unchanged folder, in a new process (goal under
  5 s at 100,000 files; nothing is read or embedded).

Goal: ours at least 0.9x the floor's images/s. Peak RSS (VmHWM) of each process is
reported; ours should stay flat as the folder grows.

Run: `python -m benchmarks.folder_bench [--files 20000 100000] [--quick]`.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from benchmarks._common import machine_header, peak_rss_mib, write_figures
from benchmarks._compare import Figure, markdown_table

__all__ = ["main", "run", "write_pngs"]

FLOOR_CHUNK = 1024
GOAL_RATIO = 0.9
GOAL_REINDEX_S = 5.0
QUICK_FILES = 300


def write_pngs(n: int, root: Path | None = None) -> Path:
    """A folder of n small (32x32) PNGs, 1,000 a subfolder, written once and reused."""
    root = root or Path(tempfile.gettempdir()) / "clip-mm-folder-bench" / str(n)
    done = root / ".complete"
    if done.exists():
        return root
    rng = np.random.default_rng(0)
    for i in range(n):
        path = root / f"{i // 1000:03d}" / f"{i:06d}.png"
        if not path.exists():
            path.parent.mkdir(parents=True, exist_ok=True)
            coarse = rng.integers(0, 256, (4, 4, 3), dtype=np.uint8)
            Image.fromarray(coarse).resize((32, 32), Image.Resampling.BICUBIC).save(path)
    done.touch()
    return root


# -- the workers (each in its own process) --------------------------------------------------


def _encoder() -> Any:
    from benchmarks._common import encoder_for

    return encoder_for("demo")


def _client(db: str) -> Any:
    import chromadb
    from chromadb.config import Settings

    return chromadb.PersistentClient(path=db, settings=Settings(anonymized_telemetry=False))


def _ours(folder: str, db: str) -> dict[str, Any]:
    from clip_multimodal.index import ImageIndex

    encoder = _encoder()
    index = ImageIndex(encoder, "bench", client=_client(db))
    start = time.perf_counter()
    report = index.index_folder(folder, progress=False)
    seconds = time.perf_counter() - start
    return {"seconds": seconds, "report": str(report), "precision": encoder.precision}


def _reindex(folder: str, db: str) -> dict[str, Any]:
    from clip_multimodal.index import ImageIndex

    index = ImageIndex(_encoder(), "bench", client=_client(db))
    start = time.perf_counter()
    report = index.index_folder(folder, progress=False)
    seconds = time.perf_counter() - start
    if report.embedded or report.added or report.updated:
        raise RuntimeError(f"the unchanged re-index did work: {report}")
    return {"seconds": seconds, "report": str(report)}


def _floor(folder: str, db: str) -> dict[str, Any]:
    from clip_multimodal.index import read_image_source
    from clip_multimodal.index._sync import DEFAULT_PATTERNS, file_id, scan_folder

    encoder = _encoder()
    collection = _client(db).create_collection(
        f"floor-{uuid.uuid4().hex[:8]}",
        embedding_function=None,
        configuration={"hnsw": {"space": "cosine"}},
    )
    paths = [f.uri for f in scan_folder(Path(folder), True, DEFAULT_PATTERNS)]
    metadatas = [{**read_image_source(p).metadata(), "folder": folder} for p in paths]
    start = time.perf_counter()
    for s in range(0, len(paths), FLOOR_CHUNK):
        chunk = paths[s : s + FLOOR_CHUNK]
        collection.add(
            ids=[file_id(p) for p in chunk],
            embeddings=encoder.embed_images(chunk),
            uris=chunk,
            metadatas=metadatas[s : s + FLOOR_CHUNK],
        )
    return {"seconds": time.perf_counter() - start, "precision": encoder.precision}


WORKERS = {"ours": _ours, "floor": _floor, "reindex": _reindex}


def _worker(name: str, folder: str, db: str) -> None:
    result = WORKERS[name](folder, db)
    result["peak_rss_mib"] = peak_rss_mib()
    print(json.dumps(result))


def _spawn(name: str, folder: Path, db: Path) -> dict[str, Any]:
    cmd = [sys.executable, "-m", "benchmarks.folder_bench", "--worker", name]
    cmd += ["--folder", str(folder), "--db", str(db)]
    done = subprocess.run(cmd, capture_output=True, text=True, env=os.environ.copy())
    if done.returncode != 0:
        raise RuntimeError(f"the {name} worker failed ({done.returncode}):\n{done.stderr[-3000:]}")
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


# -- the comparison -------------------------------------------------------------------------


def run(sizes: list[int], root: Path | None = None) -> list[Figure]:
    """Ours, the floor and the re-index at each size; floor first at one size, ours first at
    the next, so neither always meets a cold page cache. `root`: where the PNGs go."""
    figures: list[Figure] = []
    for turn, n in enumerate(sizes):
        folder = write_pngs(n, None if root is None else root / str(n))
        with tempfile.TemporaryDirectory(prefix="clip-mm-folder-db-") as tmp:
            order = ["ours", "floor"] if turn % 2 else ["floor", "ours"]
            got = {name: _spawn(name, folder, Path(tmp) / name) for name in order}
            got["reindex"] = _spawn("reindex", folder, Path(tmp) / "ours")
        figures += _figures(n, got)
    return figures


def _figures(n: int, got: dict[str, dict[str, Any]]) -> list[Figure]:
    ours, floor, reindex = got["ours"], got["floor"], got["reindex"]
    rate, floor_rate = n / ours["seconds"], n / floor["seconds"]
    model = f"demo model, {ours['precision']}"
    return [
        Figure(
            f"index_folder {n:,} PNGs ({model})",
            rate,
            "img/s",
            floor_rate,
            "embed + raw collection.add, same records",
            f">= {GOAL_RATIO:g}x floor",
            rate >= GOAL_RATIO * floor_rate,
            {"ours": ours, "floor": floor},
        ),
        Figure(
            f"index_folder {n:,} PNGs, peak RSS",
            ours["peak_rss_mib"],
            "MiB",
            floor["peak_rss_mib"],
            "the floor's peak RSS",
        ),
        Figure(
            f"re-index {n:,} unchanged files",
            reindex["seconds"],
            "s",
            None,
            "",
            f"< {GOAL_REINDEX_S:g} s",
            reindex["seconds"] < GOAL_REINDEX_S,
            {"reindex": reindex},
        ),
    ]


def main(argv: list[str] | None = None) -> list[Figure]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, nargs="+", default=[20_000, 100_000])
    parser.add_argument("--quick", action="store_true", help=f"{QUICK_FILES} files only")
    parser.add_argument("--worker", choices=list(WORKERS), help=argparse.SUPPRESS)
    parser.add_argument("--folder", help=argparse.SUPPRESS)
    parser.add_argument("--db", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        _worker(args.worker, args.folder, args.db)
        return []
    sizes = [QUICK_FILES] if args.quick else args.files
    info = machine_header(f"; demo model, {', '.join(f'{n:,}' for n in sizes)} PNGs 32x32")
    figures = run(sizes)
    print(markdown_table(figures))
    write_figures("folder-quick.json" if args.quick else "folder.json", info, figures)
    return figures


if __name__ == "__main__":
    main()
