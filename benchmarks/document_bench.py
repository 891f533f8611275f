"""Documents as image sources: extraction and page rendering throughput, and peak memory.

On one generated PDF of `--pages` pages (default 2,000), each with a line of text and one
distinct 256x256 image (a smooth gradient, so the file stays small):

1. **Extraction** (`mode="images"`, pypdf): pages/s and images/s of `extract_images`, which
   decodes each embedded image once, hashes it and hands on its encoded bytes.
2. **Rendering** (`mode="pages"`, pypdfium2): pages/s of pages rendered to PNG with a
   longer side of `--page-size` pixels (default 1024, the index's default).
3. **Peak memory**: each measurement runs in a fresh process; the figures are that
   process's peak RSS (interpreter, libraries and all), its RSS just before the document
   was opened, and the peak of the Python heap during the pass (measured in a second run:
   tracemalloc slows pypdf, so the timed run goes without it).

There is no incumbent path to put beside ours: LangChain's multimodal cookbook partitions
PDFs with `unstructured` (poppler and tesseract), which is not installed here.

Run: `python -m benchmarks.document_bench [--pages N] [--render-pages N] [--page-size PX]`.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import resource
import sys
import threading
import time
import tracemalloc
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from benchmarks._machine import machine_info, machine_line
from benchmarks.images import bench_dir


def write_pdf(path: Path, pages: int) -> Path:
    """The benchmark document: text and one distinct 256x256 image per page."""
    from reportlab.lib.utils import ImageReader
    from reportlab.pdfgen import canvas

    ramp = np.linspace(0, 255, 256, dtype=np.float32)
    pdf = canvas.Canvas(str(path), pagesize=(420, 420), invariant=1)
    for n in range(pages):
        # distinct for every page (up to 65,536): repeated images would be deduplicated
        tint = np.array([n % 256, (n // 256) * 29 % 256, (n * 7) % 256], dtype=np.float32)
        pixels = (ramp[:, None, None] * 0.5 + ramp[None, :, None] * 0.5 + tint) % 256
        image = Image.fromarray(pixels.astype(np.uint8))
        pdf.drawString(30, 390, f"Page {n + 1}: a figure and its caption.")
        pdf.drawImage(ImageReader(image), 80, 60, 256, 256)
        pdf.showPage()
    pdf.save()
    return path


def _measure(path: str, mode: str, page_size: int, limit: int | None, heap: bool) -> dict[str, Any]:
    """One pass over the document in this process: seconds, pages, images, memory."""
    from clip_multimodal.documents import DocumentImage, DocumentOptions, extract_images

    options = DocumentOptions(mode=mode, page_size=page_size)  # type: ignore[arg-type]
    before = _rss_mib()
    if heap:
        tracemalloc.start()
    sampler = _PeakRss()
    start = time.perf_counter()
    images = failures = 0
    pages: set[int] = set()
    for item in extract_images(path, options):
        if isinstance(item, DocumentImage):
            images += 1
            pages.add(item.provenance.page)
        else:
            failures += 1
        if limit is not None and len(pages) >= limit:
            break
    seconds = time.perf_counter() - start
    peak = sampler.stop()
    heap_peak = tracemalloc.get_traced_memory()[1] if heap else 0
    if heap:
        tracemalloc.stop()
    return {
        "seconds": seconds,
        "pages": len(pages),
        "images": images,
        "failures": failures,
        "rss_before_mib": before,
        "peak_rss_mib": peak,
        "heap_peak_mib": heap_peak / 2**20,
    }


class _PeakRss:
    """The highest RSS seen, sampled every 20 ms on a thread (ru_maxrss is carried over
    fork+exec from the parent, so it cannot tell this process's own peak)."""

    def __init__(self) -> None:
        self.peak = _rss_mib()
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()

    def _sample(self) -> None:
        while not self._done.wait(0.02):
            self.peak = max(self.peak, _rss_mib())

    def stop(self) -> float:
        self._done.set()
        self._thread.join()
        return max(self.peak, _rss_mib())


def _rss_mib() -> float:
    """This process's resident set now (Linux /proc; 0 elsewhere)."""
    try:
        pages = int(Path("/proc/self/statm").read_text().split()[1])
    except (OSError, IndexError, ValueError):
        return 0.0
    return pages * resource.getpagesize() / 2**20


def _in_fresh_process(*args: Any) -> dict[str, Any]:
    with multiprocessing.get_context("spawn").Pool(1) as pool:
        result: dict[str, Any] = pool.apply(_measure, args)
    return result


def run(pages: int, render_pages: int, page_size: int) -> dict[str, Any]:
    path = bench_dir() / f"document-{pages}.pdf"
    if not path.exists():
        write_pdf(path, pages)
    size_mib = path.stat().st_size / 2**20
    print(f"document: {path.name}, {pages} pages, {size_mib:.1f} MiB\n")
    rows = {
        "extraction (pypdf, mode=images)": (
            _in_fresh_process(str(path), "images", page_size, None, False),
            _in_fresh_process(str(path), "images", page_size, None, True),
        ),
        f"rendering (pypdfium2, mode=pages, {page_size} px)": (
            _in_fresh_process(str(path), "pages", page_size, render_pages, False),
            _in_fresh_process(str(path), "pages", page_size, min(render_pages, 200), True),
        ),
    }
    print("| path | pages | images | pages/s | images/s | RSS before | peak RSS | peak heap |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    for name, (timed, heap) in rows.items():
        rate = timed["pages"] / timed["seconds"]
        print(
            f"| {name} | {timed['pages']} | {timed['images']} | {rate:.0f} | "
            f"{timed['images'] / timed['seconds']:.0f} | {timed['rss_before_mib']:.0f} MiB | "
            f"{timed['peak_rss_mib']:.0f} MiB | {heap['heap_peak_mib']:.0f} MiB |"
        )
    return {"document_pages": pages, "document_mib": size_mib, "rows": rows}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pages", type=int, default=2000, help="pages in the document")
    parser.add_argument("--render-pages", type=int, default=2000, help="pages to render")
    parser.add_argument("--page-size", type=int, default=1024, help="rendered longer side")
    args = parser.parse_args(argv)
    info = machine_info()
    print(f"Machine: {machine_line(info)}\n")
    result = run(args.pages, args.render_pages, args.page_size)
    out = bench_dir() / "document_bench.json"
    out.write_text(json.dumps({"machine": info, **result}, indent=2, default=str))
    print(f"\nwrote {out}", file=sys.stderr)


if __name__ == "__main__":
    main()
