"""Test doubles that ship with the library (like httpx's MockTransport).

`FakeEncoder` implements the `Encoder` protocol deterministically and without torch, so users
and our own unit tests can isolate code from the model. It is never the only test of a path.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

import numpy as np

from clip_multimodal.errors import ImageLoadError
from clip_multimodal.types import ImageEmbeddings, ImageInput

__all__ = ["FakeEncoder"]


def _normalize(x: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    out: np.ndarray = (x / np.maximum(norms, 1e-12)).astype(np.float32)
    return out


class FakeEncoder:
    """A deterministic stand-in for CLIPEncoder.

    Texts map to a hash-seeded unit vector. Images map to a fixed random projection of their
    8x8 thumbnail, so near-identical images get near-identical vectors.
    """

    def __init__(self, dim: int = 32, model_id: str | None = None) -> None:
        self._dim = dim
        self._model_id = model_id or f"fake-encoder-{dim}"
        rng = np.random.default_rng(0)
        self._projection = rng.standard_normal((8 * 8 * 3, dim)).astype(np.float32)
        self.calls: list[tuple[str, int]] = []  # (method, batch size): lets tests see batching

    @property
    def model_id(self) -> str:
        return self._model_id

    @property
    def dim(self) -> int:
        return self._dim

    @property
    def context_length(self) -> int:
        return 77

    def embed_texts(self, texts: Sequence[str]) -> np.ndarray:
        self.calls.append(("embed_texts", len(texts)))
        rows = [self._text_vector(t) for t in texts]
        return _normalize(np.array(rows, dtype=np.float32).reshape(len(rows), self._dim))

    def embed_images(self, images: Sequence[ImageInput]) -> np.ndarray:
        return self.try_embed_images(images).vectors_or_raise()

    def try_embed_images(self, images: Sequence[ImageInput]) -> ImageEmbeddings:
        from clip_multimodal.images import load_image

        self.calls.append(("embed_images", len(images)))
        rows: list[np.ndarray] = []
        indices: list[int] = []
        errors: dict[int, ImageLoadError] = {}
        for i, source in enumerate(images):
            try:
                thumb = load_image(source).resize((8, 8))
            except ImageLoadError as exc:
                errors[i] = exc
                continue
            pixels = np.asarray(thumb, dtype=np.float32).reshape(-1) / 255.0 - 0.5
            rows.append(pixels @ self._projection)
            indices.append(i)
        vectors = np.array(rows, dtype=np.float32).reshape(len(rows), self._dim)
        return ImageEmbeddings(_normalize(vectors), indices, errors)

    def _text_vector(self, text: str) -> np.ndarray:
        seed = int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "little")
        return np.random.default_rng(seed).standard_normal(self._dim).astype(np.float32)
