"""Queries: a text or an image made a vector, vectors checked, and maximal marginal
relevance over candidates already fetched (NumPy)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Literal

import numpy as np

from clip_multimodal import images
from clip_multimodal.errors import ImageLoadError

if TYPE_CHECKING:
    from clip_multimodal.types import Encoder, ImageInput

__all__ = ["QueryType", "embed_query", "mmr_select", "unit_vectors"]

QueryType = Literal["auto", "text", "image"]


def embed_query(encoder: Encoder, query: str | ImageInput, query_type: QueryType) -> np.ndarray:
    """The query's vector: a text, or an image (see `ImageIndex.search` for how `auto`
    decides)."""
    if _is_text_query(query, query_type):
        vectors = encoder.embed_texts([str(query)])
    else:
        try:
            vectors = encoder.embed_images([query])
        except ImageLoadError as exc:
            if query_type == "auto" and isinstance(query, str):
                raise _read_as_image(exc) from exc
            raise
    return np.asarray(vectors[0], dtype=np.float32)


def _is_text_query(query: object, query_type: QueryType) -> bool:
    if query_type not in ("auto", "text", "image"):
        raise ValueError(f"query_type must be 'auto', 'text' or 'image', not {query_type!r}")
    if query_type != "auto":
        if query_type == "text" and not isinstance(query, str):
            raise TypeError(f"a text query must be a str, got {type(query).__name__}")
        return query_type == "text"
    return isinstance(query, str) and not images.is_image_query(query)


def _read_as_image(exc: ImageLoadError) -> ImageLoadError:
    """The load error of a str the query rule read as an image, saying how to search its words."""
    return ImageLoadError(
        exc.source,
        f"{exc.reason}. A str that looks like a path or URL is read as an image; to search "
        'for its words, pass query_type="text"',
    )


#: A row this close to unit length counts as normalized (float32 rounding of a unit vector).
_UNIT_TOLERANCE = 1e-6


def unit_vectors(vectors: Any, n: int, encoder: Encoder) -> np.ndarray:
    """`n` vectors of the encoder's dimension, L2-normalized.

    Raises:
        ValueError: another count or dimension, naming the model and the shape given.
    """
    array = np.asarray(vectors, dtype=np.float32)
    dim = int(encoder.dim)
    if array.ndim != 2 or array.shape != (n, dim):
        raise ValueError(
            f"expected {n} vector(s) of dim {dim} from model {encoder.model_id}, "
            f"got shape {array.shape}"
        )
    return np.asarray(_unit(array), dtype=np.float32)


def mmr_select(query: np.ndarray, candidates: np.ndarray, k: int, lambda_mult: float) -> list[int]:
    """Pick up to k candidate rows, each maximizing
    `lambda_mult * sim(query, c) - (1 - lambda_mult) * max(sim(c, picked))`.

    Vectors are normalized here, so similarities are cosines.
    """
    n = len(candidates)
    if n == 0 or k < 1:
        return []
    cands = _unit(np.asarray(candidates, dtype=np.float32))
    relevance = cands @ _unit(np.asarray(query, dtype=np.float32).reshape(1, -1))[0]
    redundancy = np.full(n, -np.inf, dtype=np.float32)
    picked: list[int] = []
    for _ in range(min(k, n)):
        penalty = np.where(np.isfinite(redundancy), redundancy, 0.0)
        scores = lambda_mult * relevance - (1.0 - lambda_mult) * penalty
        scores[picked] = -np.inf
        best = int(np.argmax(scores))
        picked.append(best)
        redundancy = np.maximum(redundancy, cands @ cands[best])
    return picked


def _unit(x: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    if np.all(np.abs(norms - 1.0) <= _UNIT_TOLERANCE):
        return x  # an encoder's output is unit already: the bulk path does not divide again
    return np.asarray(x / np.maximum(norms, 1e-12))
