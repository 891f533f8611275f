"""Retrieval metrics on embeddings, numpy only.

Embeddings are expected L2-normalized (cosine similarity = dot product), as the encoder gives.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

__all__ = ["precision_at_k", "recall_at_k", "top_k"]


def top_k(queries: np.ndarray, items: np.ndarray, k: int) -> np.ndarray:
    """Indices of each query's k most similar items, best first (ties broken by index)."""
    scores = np.asarray(queries, dtype=np.float64) @ np.asarray(items, dtype=np.float64).T
    return np.argsort(-scores, axis=1, kind="stable")[:, :k]


def precision_at_k(
    text_emb: np.ndarray,
    image_emb: np.ndarray,
    query_labels: Sequence[str],
    image_labels: Sequence[str],
    k: int = 10,
) -> float:
    """Mean text -> image precision@k: the share of each query's top k images that match it.

    Args:
        text_emb: (q, d) query embeddings.
        image_emb: (n, d) image embeddings, n >= k.
        query_labels: the label of each query.
        image_labels: the label of each image; an image is relevant to a query with its label.
        k: the cut-off.

    Returns:
        The precision averaged over queries, in [0, 1].
    """
    if len(image_labels) < k:
        raise ValueError(f"precision@{k} needs at least {k} images, got {len(image_labels)}")
    top = top_k(text_emb, image_emb, k)
    labels = np.asarray(image_labels)
    hits = labels[top] == np.asarray(query_labels)[:, None]
    return float(hits.mean())


def recall_at_k(
    image_emb: np.ndarray, text_emb: np.ndarray, ks: Sequence[int] = (1, 5, 10)
) -> dict[str, float]:
    """Paired retrieval recall: row i of `image_emb` and row i of `text_emb` are a pair.

    Returns:
        {"i2t_R@1": ..., "t2i_R@1": ..., ...}: the share of images whose own caption ranks in
        the top k texts (i2t), and of texts whose own image ranks in the top k images (t2i).
    """
    n = len(image_emb)
    if len(text_emb) != n:
        raise ValueError(f"recall needs paired rows: {n} images but {len(text_emb)} texts")
    out: dict[str, float] = {}
    own = np.arange(n)[:, None]
    for direction, (queries, items) in {
        "i2t": (image_emb, text_emb),
        "t2i": (text_emb, image_emb),
    }.items():
        top = top_k(queries, items, max(ks))
        for k in ks:
            out[f"{direction}_R@{k}"] = float((top[:, :k] == own).any(axis=1).mean())
    return out
