"""CPU throughput of CLIPEncoder against LangChain's OpenCLIPEmbeddings, side by side.

The baseline is the incumbent's own code: `langchain_experimental`'s `OpenCLIPEmbeddings`
instance, built around *our* open_clip model object (same weights, same preprocess, same
tokenizer), and its `embed_image` / `embed_documents` methods called as they are. Those loop
one item at a time and run the towers with autograd on (LangChain's model comes from
`create_model_and_transforms`, whose parameters require grad, and it never enters
`no_grad`), so the shared model's parameters require grad while the baseline runs.

Also measured: the text tower trimmed to the batch's longest caption against full 77-token
padding (same texts, same batches), and the opt-in JPEG `draft` decode: its speed and how far
its embeddings drift from exact decoding.

Run: `python -m benchmarks.encoder_bench [--smoke]`.
"""

from __future__ import annotations

import statistics
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from benchmarks._common import (
    autograd_on,
    machine_header,
    parse_sizes,
    random_vit_b32,
    with_autograd,
    write_figures,
)
from benchmarks._compare import Figure, alternate, markdown_table, rate, timed
from benchmarks.images import caption_texts, make_jpegs

__all__ = [
    "autograd_on",
    "bench_draft",
    "bench_images",
    "bench_texts",
    "bench_trimmed",
    "langchain_embeddings",
    "padded_embed_texts",
    "random_vit_b32",
    "run",
]

DRAFT = (224, 224)


def langchain_embeddings(encoder: Any) -> Any:
    """LangChain's `OpenCLIPEmbeddings` around the encoder's own model object.

    `model_construct` skips its validator, which would otherwise build (and download) a
    second model; every method then runs LangChain's code unchanged.
    """
    with warnings.catch_warnings():  # "langchain-experimental is being sunset": still the incumbent
        warnings.simplefilter("ignore", DeprecationWarning)
        from langchain_experimental.open_clip import OpenCLIPEmbeddings

    return OpenCLIPEmbeddings.model_construct(
        model=encoder.model,
        preprocess=encoder.preprocess,
        tokenizer=encoder.tokenizer,
        model_name="ViT-B-32",
        checkpoint="random",
    )


def bench_images(encoder: Any, paths: Sequence[Path], repeats: int) -> Figure:
    """`embed_images` on files against LangChain's `embed_image` loop."""
    lc = langchain_embeddings(encoder)
    uris = [str(p) for p in paths]
    incumbent = with_autograd(lambda: lc.embed_image(uris), encoder.model)
    t = timed({"ours": lambda: encoder.embed_images(uris), "langchain": incumbent}, repeats)
    ours = encoder.embed_images(uris)
    theirs = np.asarray(incumbent(), dtype=np.float32)
    return Figure(
        "embed_images, files (CPU, ViT-B-32 fp32)",
        t.rate("ours", len(uris)),
        "img/s",
        t.rate("langchain", len(uris)),
        "LangChain OpenCLIPEmbeddings.embed_image",
        details={
            "images": len(uris),
            **t.details("ours", "langchain"),
            "batch_size": encoder.batch_size,
            "max_abs_diff_vs_baseline": float(np.abs(ours - theirs).max()),
        },
    )


def bench_texts(encoder: Any, texts: Sequence[str], repeats: int) -> Figure:
    """`embed_texts` against LangChain's `embed_documents` loop."""
    lc = langchain_embeddings(encoder)
    incumbent = with_autograd(lambda: lc.embed_documents(list(texts)), encoder.model)
    t = timed({"ours": lambda: encoder.embed_texts(texts), "langchain": incumbent}, repeats)
    diff = np.abs(encoder.embed_texts(texts) - np.asarray(incumbent()))
    return Figure(
        "embed_texts (CPU, ViT-B-32 fp32)",
        t.rate("ours", len(texts)),
        "texts/s",
        t.rate("langchain", len(texts)),
        "LangChain OpenCLIPEmbeddings.embed_documents",
        details={
            "texts": len(texts),
            **t.details("ours", "langchain"),
            "max_abs_diff_vs_baseline": float(diff.max()),
        },
    )


@torch.inference_mode()
def padded_embed_texts(encoder: Any, texts: Sequence[str]) -> np.ndarray:
    """The encoder's batching with open_clip's plain `encode_text` on all 77 positions."""
    tokens = encoder.tokenizer(list(texts))
    out = [
        torch.nn.functional.normalize(encoder.model.encode_text(chunk).float(), dim=-1)
        for chunk in torch.split(tokens, encoder.batch_size)
    ]
    return torch.cat(out).numpy()


def bench_trimmed(encoder: Any, texts: Sequence[str], repeats: int) -> Figure:
    """The text tower trimmed to each batch's longest caption against full padding."""
    t = timed(
        {
            "trimmed": lambda: encoder.embed_texts(texts),
            "padded": lambda: padded_embed_texts(encoder, texts),
        },
        repeats,
    )
    diff = np.abs(encoder.embed_texts(texts) - padded_embed_texts(encoder, texts)).max()
    lengths = (encoder.tokenizer(list(texts)) != 0).sum(dim=1)
    return Figure(
        "text tower trimmed vs padded to 77",
        t.rate("trimmed", len(texts)),
        "texts/s",
        t.rate("padded", len(texts)),
        "same batches, 77 tokens",
        details={
            "texts": len(texts),
            **t.details("trimmed", "padded"),
            "max_tokens": int(lengths.max()),
            "median_tokens": float(lengths.float().median()),
            "max_abs_diff": float(diff),
        },
    )


def _decode_all(paths: Sequence[Path], draft: tuple[int, int] | None) -> list[Any]:
    from clip_multimodal.images import load_image

    return [load_image(p, draft=draft) for p in paths]


def bench_draft(encoder: Any, paths: Sequence[Path], repeats: int) -> Figure:
    """JPEG `draft` decoding: decode rate against exact decoding, and the embedding drift."""
    seconds = alternate(
        {
            "draft": lambda: _decode_all(paths, DRAFT),
            "exact": lambda: _decode_all(paths, None),
        },
        repeats,
    )
    exact = encoder.embed_images(_decode_all(paths, None))
    drafted = encoder.embed_images(_decode_all(paths, DRAFT))
    distance = 1.0 - (exact * drafted).sum(axis=1)
    return Figure(
        f"JPEG decode with draft {DRAFT[0]}x{DRAFT[1]} (one thread)",
        rate(len(paths), seconds["draft"]),
        "img/s",
        rate(len(paths), seconds["exact"]),
        "exact PIL decode",
        details={
            "images": len(paths),
            "seconds": seconds,
            "cosine_distance_mean": float(distance.mean()),
            "cosine_distance_max": float(distance.max()),
            "note": "drift measured on random weights; a trained model's may differ",
        },
    )


def run(
    n_images: int = 64, n_texts: int = 256, repeats: int = 3, encoder: Any = None
) -> list[Figure]:
    """Every encoder figure, on one shared model."""
    encoder = encoder or random_vit_b32()
    paths = make_jpegs(n_images)
    texts = caption_texts(n_texts)
    return [
        bench_images(encoder, paths, repeats),
        bench_texts(encoder, texts, repeats),
        bench_trimmed(encoder, texts, repeats),
        bench_draft(encoder, paths, repeats),
    ]


def main(argv: list[str] | None = None) -> None:
    sizes = {"images": (64, 4), "texts": (256, 8), "repeats": (3, 1)}
    args = parse_sizes(argv, __doc__, sizes)
    figures = run(args.images, args.texts, args.repeats)
    info = machine_header()
    print(markdown_table(figures))
    for f in figures:
        extra = {k: v for k, v in f.details.items() if k != "seconds"}
        extra = {k: v for k, v in extra.items() if k != "cpu_seconds"}
        cpu = f.details.get("cpu_seconds")
        cpu_text = f"; median CPU s {_medians(cpu)}" if cpu else ""
        print(f"  {f.benchmark}: {extra}; median s {_medians(f.details['seconds'])}{cpu_text}")
    write_figures("encoder.json", info, figures)


def _medians(seconds: dict[str, list[float]]) -> dict[str, float]:
    return {k: round(statistics.median(v), 4) for k, v in seconds.items()}


if __name__ == "__main__":
    main()
