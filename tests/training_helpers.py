"""Tiny models and CSVs for the training command's tests (plumbing; quality is tested by the
examples on real data)."""

from __future__ import annotations

import contextlib
import csv
import json
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest
import torch

#: Two layers per tower, so partial locking has groups to leave unlocked.
TINY_CFG: dict[str, Any] = {
    "embed_dim": 32,
    "vision_cfg": {"image_size": 32, "patch_size": 8, "width": 32, "layers": 2, "head_width": 16},
    "text_cfg": {"context_length": 16, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 2},
}


@contextlib.contextmanager
def one_thread() -> Iterator[None]:
    """One torch thread: the CPUs are shared, and more threads than free cores thrash."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


@pytest.fixture(autouse=True)
def one_thread_per_test() -> Iterator[None]:
    """`one_thread` around every test of a module that imports this fixture."""
    with one_thread():
        yield


def tiny_model_dir(out: Path, seed: int = 0) -> Path:
    """A random tiny CLIP saved as an open_clip local-dir folder."""
    import open_clip

    from clip_multimodal.training import save_local_dir

    torch.manual_seed(seed)
    model = open_clip.CLIP(**TINY_CFG)
    return save_local_dir(model, TINY_CFG, {"size": 32}, out, "tiny")


def write_arch(path: Path) -> Path:
    path.write_text(json.dumps({"model_cfg": TINY_CFG, "preprocess_cfg": {"size": 32}}))
    return path


def write_shapes_csv(
    folder: Path,
    name: str,
    n: int,
    seed: int = 0,
    sep: str = ",",
    header: Sequence[str] = ("filepath", "title", "label"),
    extra_rows: Sequence[Sequence[str]] = (),
) -> Path:
    """n shape images (PNG, in folder/images) with captions and labels, then `extra_rows`."""
    from clip_multimodal.datasets import shapes_samples

    images = folder / "images"
    images.mkdir(parents=True, exist_ok=True)
    path = folder / name
    with path.open("w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f, delimiter=sep)
        writer.writerow(header)
        for i, sample in enumerate(shapes_samples("train", n=n, seed=seed, size=32)):
            file = f"images/{Path(name).stem}-{i:03d}.png"
            sample.image.save(folder / file)
            writer.writerow([file, sample.caption, sample.label.split()[-1]])
        writer.writerows(extra_rows)
    return path


def state_dict(folder: Path) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    return load_file(str(folder / "open_clip_model.safetensors"))


def max_diff(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor], prefix: str = "") -> float:
    keys = [k for k in a if k.startswith(prefix)]
    return max(float((a[k].float() - b[k].float()).abs().max()) for k in keys)


def global_batch(n: int = 8, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """A fixed batch of random images and token rows for the tiny model."""
    generator = torch.Generator().manual_seed(seed)
    images = torch.randn(n, 3, 32, 32, generator=generator)
    tokens = torch.randint(1, 4000, (n, 16), generator=generator)
    return images, tokens


def tiny_model(seed: int = 0) -> Any:
    import open_clip

    torch.manual_seed(seed)
    return open_clip.CLIP(**TINY_CFG)


def gradients(model: Any) -> dict[str, torch.Tensor]:
    return {n: p.grad.detach().clone() for n, p in model.named_parameters() if p.grad is not None}


def ddp_gradient_worker(rank: int, world: int, port: int, out: str) -> None:
    """One rank of a gloo group on loopback: its slice of `global_batch`, one backward through
    the gathered loss inside DDP, then the (averaged) gradients and the group's collective
    timeout saved to out/rank<r>.pt."""
    import os

    import torch.distributed as dist

    from clip_multimodal.training.distributed import (
        gathered_clip_loss,
        init_distributed,
        wrap_for_training,
    )

    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    os.environ.update(RANK=str(rank), LOCAL_RANK=str(rank), WORLD_SIZE=str(world))
    torch.set_num_threads(1)
    env = init_distributed("cpu", timeout_min=45)
    try:
        group = dist.distributed_c10d._get_default_group()
        timeout = group._get_backend(torch.device("cpu")).options._timeout  # the group's own
        model = tiny_model()
        forward = wrap_for_training(model, env)
        images, tokens = global_batch()
        rows = slice(rank * len(images) // world, (rank + 1) * len(images) // world)
        image_f, text_f, scale = forward(images[rows], tokens[rows])
        loss = gathered_clip_loss(image_f, text_f, scale, env)
        loss.backward()
        result = {"loss": loss.detach(), "grads": gradients(model)}
        torch.save({**result, "timeout_s": timeout.total_seconds()}, f"{out}/rank{rank}.pt")
    finally:
        dist.destroy_process_group()
