"""Synthetic benchmark images: photo-like 640x480 JPEGs, generated once and cached.

Smooth colour fields with shapes and sensor-like noise compress like photographs (about
75 kB at quality 90), so decode costs are realistic. Each file is a pure function of its
index, so every run and every machine benchmarks the same bytes.
"""

from __future__ import annotations

import os
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

__all__ = ["bench_dir", "caption_texts", "make_jpegs", "synthetic_image"]

REPO = Path(__file__).resolve().parent.parent


def bench_dir() -> Path:
    """Where benchmarks cache images and write results: $CLIP_MM_BENCH_DIR or <repo>/.bench."""
    path = Path(os.environ.get("CLIP_MM_BENCH_DIR") or REPO / ".bench")
    path.mkdir(parents=True, exist_ok=True)
    return path


def synthetic_image(index: int, size: tuple[int, int] = (640, 480)) -> Image.Image:
    """A deterministic photo-like RGB image."""
    rng = np.random.default_rng(index)
    width, height = size
    coarse = rng.integers(0, 256, (6, 8, 3), dtype=np.uint8)
    image = Image.fromarray(coarse).resize(size, Image.Resampling.BICUBIC)
    draw = ImageDraw.Draw(image)
    margin = min(40, width // 2, height // 2)  # 40 at benchmark sizes; smaller for tiny tests
    for _ in range(int(rng.integers(3, 8))):
        x0, y0 = int(rng.integers(0, width - margin)), int(rng.integers(0, height - margin))
        x1 = x0 + int(rng.integers(20, max(21, width // 2)))
        y1 = y0 + int(rng.integers(20, max(21, height // 2)))
        fill = tuple(int(c) for c in rng.integers(0, 256, 3))
        shape = draw.ellipse if rng.random() < 0.5 else draw.rectangle
        shape((x0, y0, x1, y1), fill=fill)
    noise = rng.normal(0.0, 6.0, (height, width, 3))
    pixels = np.clip(np.asarray(image, dtype=np.float32) + noise, 0, 255).astype(np.uint8)
    return Image.fromarray(pixels)


def _write_jpeg(index: int, size: tuple[int, int], quality: int, path: Path) -> None:
    tmp = path.with_suffix(f".{os.getpid()}.tmp")
    synthetic_image(index, size).save(tmp, format="JPEG", quality=quality)
    tmp.replace(path)  # atomic, so a killed run never leaves a truncated file


def make_jpegs(
    n: int,
    size: tuple[int, int] = (640, 480),
    root: Path | None = None,
    quality: int = 90,
    workers: int = 1,
) -> list[Path]:
    """`n` synthetic JPEG files (cached: existing files are reused), in index order.

    `workers` > 1 generates missing files in that many processes (2,048 files take about
    90 s on one core).
    """
    folder = (root or bench_dir() / "images") / f"{size[0]}x{size[1]}-q{quality}"
    folder.mkdir(parents=True, exist_ok=True)
    paths = [folder / f"{i:05d}.jpg" for i in range(n)]
    missing = [i for i, path in enumerate(paths) if not path.exists()]
    if workers > 1 and len(missing) > workers:
        with ProcessPoolExecutor(workers) as pool:
            jobs = [pool.submit(_write_jpeg, i, size, quality, paths[i]) for i in missing]
            for job in jobs:
                job.result()
    else:
        for i in missing:
            _write_jpeg(i, size, quality, paths[i])
    return paths


_COLOURS = ["red", "green", "blue", "yellow", "purple", "orange", "white", "black"]
_THINGS = ["circle", "square", "triangle", "dog", "cat", "car", "house", "tree", "bird"]
_PLACES = ["on a dark background", "in a park", "next to a river", "under a bright sky"]


def caption_texts(n: int, seed: int = 0) -> list[str]:
    """`n` captions of mixed lengths (about 5 to 25 tokens), like real alt texts."""
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        words = [str(rng.choice(_COLOURS)), str(rng.choice(_THINGS))]
        if rng.random() < 0.6:
            words.append(str(rng.choice(_PLACES)))
        if rng.random() < 0.3:
            words += ["and a", str(rng.choice(_COLOURS)), str(rng.choice(_THINGS))]
            words.append(str(rng.choice(_PLACES)))
        out.append("a photo of a " + " ".join(words))
    return out
