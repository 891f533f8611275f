"""Maximal marginal relevance over candidates already fetched from Chroma (NumPy only)."""

from __future__ import annotations

import numpy as np

__all__ = ["mmr_select"]


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
    return np.asarray(x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12))
