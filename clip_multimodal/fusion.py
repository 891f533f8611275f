"""Reciprocal rank fusion: several ranked lists into one, with a weight per list.

The one fusion both adapters' text+image retrievers use. A result ranked r (1-based) in list
i adds `weights[i] / (c + r)` to its score; results in several lists add up. The scale of
each list's own scores never matters, which is why ranks fuse a text store's scores and
CLIP's cosine similarities fairly.
"""

from __future__ import annotations

from collections.abc import Hashable, Sequence
from typing import TypeVar

__all__ = ["DEFAULT_RRF_C", "reciprocal_rank_fusion"]

#: The rank offset of Cormack et al. (2009), and LangChain's EnsembleRetriever's default.
DEFAULT_RRF_C = 60

K = TypeVar("K", bound=Hashable)


def reciprocal_rank_fusion(
    rankings: Sequence[Sequence[K]], weights: Sequence[float] | None = None, c: int = DEFAULT_RRF_C
) -> list[tuple[K, float]]:
    """The keys of all `rankings` (each best first), by fused score, best first.

    Ties keep the order in which keys were first seen (list by list), so the result is
    deterministic. A key repeated within one list counts at its best rank only.

    Raises:
        ValueError: weights of another length than rankings, a negative weight, no positive
            one, or c < 0.
    """
    weights = [1.0] * len(rankings) if weights is None else list(weights)
    if len(weights) != len(rankings):
        raise ValueError(f"got {len(weights)} weights for {len(rankings)} ranked lists")
    if any(w < 0 for w in weights) or (rankings and not any(w > 0 for w in weights)):
        raise ValueError(f"weights must be >= 0 with at least one > 0, not {weights}")
    if c < 0:
        raise ValueError(f"c must be >= 0, not {c}")
    scores: dict[K, float] = {}
    for ranking, weight in zip(rankings, weights, strict=True):
        seen: set[K] = set()
        for rank, key in enumerate(ranking, 1):
            if key in seen:
                continue
            seen.add(key)
            scores[key] = scores.get(key, 0.0) + weight / (c + rank)
    order = {key: i for i, key in enumerate(scores)}
    return sorted(scores.items(), key=lambda item: (-item[1], order[item[0]]))
