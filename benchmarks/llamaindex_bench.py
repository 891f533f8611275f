"""LlamaIndex embeddings: CLIPMultiModalEmbedding against ClipEmbedding's exact code path.

`llama-index-embeddings-clip`'s `ClipEmbedding` needs OpenAI's `clip` package from git, which
cannot be installed here, so `ClipStyleEmbedding` below reproduces its code path line for
line on open_clip (its source: run-llama/llama_index,
llama-index-integrations/embeddings/llama-index-embeddings-clip/llama_index/embeddings/clip/base.py):

- images: for each item, `Image.open(path)`, the model's preprocess, `unsqueeze(0)`, one
  `encode_image` under `torch.no_grad()`, `.tolist()[0]`; no normalization;
- texts: for each item, `import clip` inside the loop, `clip.tokenize(text)`, one
  `encode_text` with autograd on (no `no_grad`), `.tolist()[0]`; no normalization;
- async: the sync method called inside `async def` (the event loop blocks);
- batching: LlamaIndex's base class loops `_get_image_embedding` over each batch of
  `embed_batch_size` (10).

`clip.load` on a CPU returns an fp32 model whose parameters require grad; both sides here
share one open_clip ViT-B-32 with random weights (fp32, CPU), and the parameters require
grad while the incumbent runs. Both go through LlamaIndex's public API
(`get_image_embedding_batch`, `get_text_embedding_batch`), alternately, in one process, on
the same JPEG files; the vectors are checked to agree (after normalizing the incumbent's).

Run: `python -m benchmarks.llamaindex_bench [--smoke] [--images N] [--texts N]`.
"""

from __future__ import annotations

import statistics
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch
from llama_index.core.base.embeddings.base import Embedding
from llama_index.core.bridge.pydantic import Field, PrivateAttr
from llama_index.core.constants import DEFAULT_EMBED_BATCH_SIZE
from llama_index.core.embeddings.multi_modal_base import MultiModalEmbedding
from llama_index.core.schema import ImageType
from llama_index.embeddings.clip_multimodal import CLIPMultiModalEmbedding
from PIL import Image

from benchmarks._common import (
    autograd_on,
    machine_header,
    parse_sizes,
    random_vit_b32,
    with_autograd,
    write_figures,
)
from benchmarks._compare import Figure, alternate, markdown_table, rate
from benchmarks.images import caption_texts, make_jpegs

__all__ = ["ClipStyleEmbedding", "bench_images", "bench_texts", "run"]


class ClipStyleEmbedding(MultiModalEmbedding):
    """`ClipEmbedding` (llama-index-embeddings-clip) with open_clip in place of `clip`."""

    embed_batch_size: int = Field(default=DEFAULT_EMBED_BATCH_SIZE, gt=0)

    _model: Any = PrivateAttr()
    _preprocess: Any = PrivateAttr()
    _tokenize: Any = PrivateAttr()
    _device: Any = PrivateAttr()

    @classmethod
    def class_name(cls) -> str:
        return "ClipEmbedding"

    def __init__(self, model: Any, preprocess: Any, tokenizer: Any, **kwargs: Any) -> None:
        super().__init__(model_name="ViT-B-32", **kwargs)
        # clip.load(name, device=...): the model, its preprocess; fp32 on the CPU.
        self._device = "cuda" if torch.cuda.is_available() else "cpu"
        self._model, self._preprocess, self._tokenize = model, preprocess, tokenizer

    # TEXT EMBEDDINGS

    async def _aget_query_embedding(self, query: str) -> Embedding:
        return self._get_query_embedding(query)

    def _get_text_embedding(self, text: str) -> Embedding:
        return self._get_text_embeddings([text])[0]

    def _get_text_embeddings(self, texts: list[str]) -> list[Embedding]:
        results = []
        for text in texts:
            import open_clip  # noqa: F401  (the original imports clip here, per item)

            text_embedding = self._model.encode_text(self._tokenize(text).to(self._device))
            results.append(text_embedding.tolist()[0])

        return results

    def _get_query_embedding(self, query: str) -> Embedding:
        return self._get_text_embedding(query)

    # IMAGE EMBEDDINGS

    async def _aget_image_embedding(self, img_file_path: ImageType) -> Embedding:
        return self._get_image_embedding(img_file_path)

    def _get_image_embedding(self, img_file_path: ImageType) -> Embedding:
        with torch.no_grad():
            image = self._preprocess(Image.open(img_file_path)).unsqueeze(0).to(self._device)
            result: Embedding = self._model.encode_image(image).tolist()[0]
            return result


def _max_cosine_gap(ours: Sequence[Embedding], theirs: Sequence[Embedding]) -> float:
    """How far apart the two sides' vectors point (0 = same direction), over all items."""
    a = np.asarray(ours, dtype=np.float64)
    b = np.asarray(theirs, dtype=np.float64)
    b /= np.linalg.norm(b, axis=1, keepdims=True)
    return float(np.max(1.0 - np.sum(a * b, axis=1)))


def _side_by_side(
    encoder: Any, batch: Callable[[MultiModalEmbedding], list[Embedding]], repeats: int
) -> tuple[dict[str, list[float]], float, dict[str, int]]:
    """`batch` on our embedding and on the incumbent, alternately; seconds, gap, batch sizes."""
    ours = CLIPMultiModalEmbedding(encoder=encoder)
    theirs = ClipStyleEmbedding(encoder.model, encoder.preprocess, encoder.tokenizer)
    seconds = alternate(
        {
            "ours": lambda: batch(ours),
            "clip": with_autograd(lambda: batch(theirs), encoder.model),
        },
        repeats,
    )
    with autograd_on(encoder.model):
        gap = _max_cosine_gap(batch(ours), batch(theirs))
    return seconds, gap, {"ours": ours.embed_batch_size, "clip": theirs.embed_batch_size}


def bench_images(encoder: Any, uris: list[ImageType], repeats: int) -> Figure:
    """`get_image_embedding_batch` on files, both sides."""
    seconds, gap, batch_sizes = _side_by_side(
        encoder, lambda side: side.get_image_embedding_batch(uris), repeats
    )
    return Figure(
        "get_image_embedding_batch, files (CPU, ViT-B-32 fp32)",
        rate(len(uris), seconds["ours"]),
        "img/s",
        rate(len(uris), seconds["clip"]),
        "ClipEmbedding code path",
        details={
            "images": len(uris),
            "seconds": seconds,
            "embed_batch_size": batch_sizes,
            "max_cosine_gap": gap,
        },
    )


def bench_texts(encoder: Any, texts: list[str], repeats: int) -> Figure:
    """`get_text_embedding_batch`, both sides."""
    seconds, gap, _ = _side_by_side(
        encoder, lambda side: side.get_text_embedding_batch(texts), repeats
    )
    return Figure(
        "get_text_embedding_batch (CPU, ViT-B-32 fp32)",
        rate(len(texts), seconds["ours"]),
        "texts/s",
        rate(len(texts), seconds["clip"]),
        "ClipEmbedding code path",
        details={"texts": len(texts), "seconds": seconds, "max_cosine_gap": gap},
    )


def run(
    n_images: int = 64, n_texts: int = 64, repeats: int = 3, encoder: Any = None
) -> list[Figure]:
    """Both figures on one shared model and the same files."""
    encoder = encoder or random_vit_b32()
    uris: list[ImageType] = [str(p) for p in make_jpegs(n_images)]
    return [
        bench_images(encoder, uris, repeats),
        bench_texts(encoder, caption_texts(n_texts), repeats),
    ]


def main(argv: list[str] | None = None) -> None:
    sizes = {"images": (64, 4), "texts": (64, 8), "repeats": (3, 1)}
    args = parse_sizes(argv, __doc__, sizes)
    figures = run(args.images, args.texts, args.repeats)
    info = machine_header(f"; {args.images} JPEGs 640x480, {args.texts} captions")
    print(markdown_table(figures))
    for f in figures:
        medians = {k: round(statistics.median(v), 3) for k, v in f.details["seconds"].items()}
        extra = {k: v for k, v in f.details.items() if k != "seconds"}
        print(f"  {f.benchmark}: median s {medians}; {extra}")
    write_figures("llamaindex.json", info, figures)


if __name__ == "__main__":
    main()
