"""Where `embed_images` spends its time on this machine: the profile behind the README's bound.

`python -m benchmarks.profile_images [--precision fp32|bf16]` embeds 32 generated 640x480
JPEGs with ViT-B-32 (random weights), times the image tower alone on the same ready tensors,
and prints torch's operator profile of one tower pass.
"""

from __future__ import annotations

import argparse
import time

import torch
from torch.profiler import ProfilerActivity, profile

from benchmarks.images import make_jpegs
from clip_multimodal import CLIPEncoder, load_image


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--precision", default="fp32", choices=["fp32", "bf16"])
    parser.add_argument("--images", type=int, default=32)
    args = parser.parse_args(argv)
    files = make_jpegs(args.images)
    enc = CLIPEncoder("ViT-B-32", None, device="cpu", precision=args.precision)
    enc.embed_images(files[:4])  # warm-up
    start = time.perf_counter()
    enc.embed_images(files)
    total = time.perf_counter() - start
    pixels = torch.stack([enc.preprocess(load_image(f)) for f in files])
    start = time.perf_counter()
    enc.embed_pixels(pixels)
    tower = time.perf_counter() - start
    print(f"embed_images, {len(files)} files: {total:.2f} s ({len(files) / total:.1f} img/s)")
    print(f"image tower alone on ready tensors: {tower:.2f} s ({tower / total:.0%} of that)")
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        enc.embed_pixels(pixels)
    print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=8))


if __name__ == "__main__":
    main()
