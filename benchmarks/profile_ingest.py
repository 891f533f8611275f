"""Where `index_folder` spends its time: each stage's seconds, with a cheap and a costly model.

`python -m benchmarks.profile_ingest [--model demo|vit-b-32] [--files N] [--precision P]`
syncs a folder into a fresh embedded Chroma and times each stage as it runs:

- **plan**: walking the folder, and comparing it with the stored records;
- **read**: reading, hashing and header-parsing the files (`read_many`);
- **lookups**: the store calls of the ingest thread (which ids and which contents are stored);
- **model**: decoding, preprocessing and the forward pass (`encoder.try_embed_images`);
- **writes**: Chroma's `add` on the writer thread (it overlaps the model, but embedded Chroma
  holds the GIL while it writes, so it is mostly time the model waits);
- **other**: the rest of the ingest thread (metadata, batching, bookkeeping).

The demo model on 32x32 PNGs (the folder benchmark's files) stands in for a GPU, where the
model is cheap and bookkeeping shows; ViT-B-32 (random weights) on 640x480 JPEGs is the CPU
case, where the forward pass dominates.
"""

from __future__ import annotations

import argparse
import collections
import functools
import tempfile
import threading
import time
from collections.abc import Callable
from typing import Any

from benchmarks._common import encoder_for
from benchmarks.folder_bench import write_pngs
from benchmarks.images import make_jpegs
from clip_multimodal.index import ImageIndex, _chroma, _ingest, _sync
from clip_multimodal.index._sources import read_many

_WRITER = "clip-index-writer"


class Stages:
    """Seconds per stage, summed over calls; the writer thread's store calls apart."""

    def __init__(self) -> None:
        self.seconds: collections.defaultdict[str, float] = collections.defaultdict(float)

    def timed(self, stage: str, fn: Callable[..., Any]) -> Callable[..., Any]:
        @functools.wraps(fn)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            start = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                self.seconds[stage] += time.perf_counter() - start

        return wrapper

    def store_call(self, fn: Callable[..., Any]) -> Callable[..., Any]:
        @functools.wraps(fn)
        def wrapper(store: Any, method: str, kwargs: dict[str, Any]) -> Any:
            writer = threading.current_thread().name.startswith(_WRITER)
            stage = "writes" if writer else "lookups"
            start = time.perf_counter()
            try:
                return fn(store, method, kwargs)
            finally:
                self.seconds[stage] += time.perf_counter() - start

        return wrapper


def profile(model: str, files: int, precision: str) -> tuple[float, Stages, str]:
    """Sync a folder of `files` images; (total seconds, stage times, precision used)."""
    encoder = encoder_for(model, precision=precision)
    folder = write_pngs(files) if model == "demo" else make_jpegs(files)[0].parent
    stages = Stages()
    patches = [
        (_sync, "plan_folder", stages.timed("plan", _sync.plan_folder)),
        (_ingest, "read_many", stages.timed("read", read_many)),
        (_chroma.LockedCollection, "_call", stages.store_call(_chroma.LockedCollection._call)),
    ]
    saved = [(owner, name, getattr(owner, name)) for owner, name, _ in patches]
    for owner, name, new in patches:
        setattr(owner, name, new)
    encoder.try_embed_images = stages.timed("model", encoder.try_embed_images)
    try:
        with tempfile.TemporaryDirectory(prefix="clip-mm-profile-") as db:
            index = ImageIndex(encoder, "profile", db)
            start = time.perf_counter()
            index.index_folder(folder, progress=False)
            total = time.perf_counter() - start
    finally:
        for owner, name, old in saved:
            setattr(owner, name, old)
    return total, stages, str(encoder.precision)


def report(total: float, stages: Stages, files: int) -> str:
    seconds = stages.seconds
    ingest_thread = ("plan", "read", "lookups", "model")
    other = total - sum(seconds[s] for s in ingest_thread)
    rows = [*((s, seconds[s]) for s in ingest_thread), ("other", other)]
    lines = [f"total {total:.1f} s, {files / total:.0f} img/s", "| stage | s | share |"]
    lines.append("| --- | --- | --- |")
    lines += [f"| {name} | {s:.2f} | {s / total:.1%} |" for name, s in rows]
    lines.append(f"| writes (writer thread) | {seconds['writes']:.2f} | {seconds['writes'] / total:.1%} |")  # fmt: skip
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", choices=["demo", "vit-b-32"], default="demo")
    parser.add_argument("--files", type=int, default=20_000)
    parser.add_argument("--precision", default="auto", choices=["auto", "fp32", "bf16"])
    args = parser.parse_args(argv)
    model = "demo" if args.model == "demo" else "ViT-B-32"
    total, stages, precision = profile(model, args.files, args.precision)
    print(f"index_folder, {args.files:,} files, {model} at {precision}")
    print(report(total, stages, args.files))


if __name__ == "__main__":
    main()
