"""What the benchmarks share: the model they run on, the incumbent's autograd, their CLI and report.

Only the harness lives here; each benchmark's baseline code path stays in its own module.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

import torch

from benchmarks._compare import Figure, write_json
from benchmarks._machine import machine_info, machine_line
from benchmarks.images import bench_dir

__all__ = [
    "autograd_on",
    "encoder_for",
    "machine_header",
    "parse_sizes",
    "random_vit_b32",
    "with_autograd",
    "write_figures",
]

T = TypeVar("T")


def random_vit_b32() -> Any:
    """ViT-B-32 with random weights on the CPU, fp32 (no download): the incumbents run this
    model object as open_clip builds it; `at_precision(encoder, "auto")` is ours at the defaults."""
    from clip_multimodal import CLIPEncoder

    return CLIPEncoder("ViT-B-32", None, device="cpu", precision="fp32")


def encoder_for(model: str, device: str = "cpu", precision: str = "auto") -> Any:
    """'demo' is the bundled demo model; any other name an architecture with random weights.

    Random weights cost the same as trained ones, and nothing is downloaded.
    """
    from clip_multimodal import CLIPEncoder
    from clip_multimodal.models import DEMO_MODEL

    name = DEMO_MODEL if model == "demo" else model
    return CLIPEncoder(name, None, device=device, precision=precision)  # type: ignore[arg-type]


def at_precision(encoder: Any, precision: str) -> Any:
    """A second encoder with the same weights at another precision (e.g. the opt-in bf16)."""
    from clip_multimodal import CLIPEncoder

    other = CLIPEncoder(encoder.model_name, encoder.pretrained, device=encoder.device, precision=precision)  # fmt: skip
    other.model.load_state_dict(encoder.model.state_dict())
    return other


@contextmanager
def autograd_on(model: torch.nn.Module) -> Iterator[None]:
    """Parameters require grad inside the block, as in a model fresh from open_clip."""
    flags = [p.requires_grad for p in model.parameters()]
    model.requires_grad_(True)
    try:
        yield
    finally:
        for p, flag in zip(model.parameters(), flags, strict=True):
            p.requires_grad_(flag)


def with_autograd(fn: Callable[[], T], model: torch.nn.Module) -> Callable[[], T]:
    """`fn` run inside `autograd_on(model)`: how an incumbent's call is timed."""

    def call() -> T:
        with autograd_on(model):
            return fn()

    return call


def parse_sizes(
    argv: list[str] | None,
    doc: str,
    sizes: Mapping[str, tuple[int, int]],
    configure: Callable[[argparse.ArgumentParser], object] | None = None,
) -> argparse.Namespace:
    """A benchmark's command line: `--NAME N` per size, `--smoke`, and what `configure` adds.

    `sizes` maps each option to (default, smoke value); `--smoke` sets every smoke value.
    """
    parser = argparse.ArgumentParser(description=doc.splitlines()[0])
    for name, (default, _) in sizes.items():
        parser.add_argument(f"--{name}", type=int, default=default)
    if configure is not None:
        configure(parser)
    parser.add_argument("--smoke", action="store_true", help="tiny sizes, to check it runs")
    args = parser.parse_args(argv)
    if args.smoke:
        for name, (_, smoke) in sizes.items():
            setattr(args, name.replace("-", "_"), smoke)
    return args


def machine_header(caption: str = "") -> dict[str, Any]:
    """Print the machine line (and a caption after it); the machine info, for the JSON."""
    info = machine_info()
    print(f"Machine: {machine_line(info)}{caption}\n")
    return info


def write_figures(name: str, info: dict[str, Any], figures: list[Figure], **extra: Any) -> Path:
    """Write `{machine, **extra, figures}` to `name` in the bench folder; its path."""
    out = bench_dir() / name
    write_json(out, {"machine": info, **extra, "figures": [f.as_dict() for f in figures]})
    return out


def peak_rss_mib() -> float:
    """This process's peak resident set: Linux's VmHWM, which a new program starts afresh.

    `ru_maxrss` is carried over fork and exec, so a worker started from a large process (the
    CPU suite holds ViT-B-32) reports its parent's peak instead of its own.
    """
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except (OSError, ValueError, IndexError):
        pass
    import resource  # not Linux: the best there is

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
