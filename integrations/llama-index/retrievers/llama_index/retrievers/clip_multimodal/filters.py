"""LlamaIndex MetadataFilters as a Chroma `where` clause."""

from __future__ import annotations

from typing import Any

from llama_index.core.vector_stores.types import (
    FilterCondition,
    FilterOperator,
    MetadataFilter,
    MetadataFilters,
)

__all__ = ["SUPPORTED_OPERATORS", "to_chroma_where"]

_OPERATORS = {
    FilterOperator.EQ: "$eq",
    FilterOperator.NE: "$ne",
    FilterOperator.GT: "$gt",
    FilterOperator.GTE: "$gte",
    FilterOperator.LT: "$lt",
    FilterOperator.LTE: "$lte",
    FilterOperator.IN: "$in",
    FilterOperator.NIN: "$nin",
}
_NEGATED = {
    "$eq": "$ne",
    "$ne": "$eq",
    "$gt": "$lte",
    "$lte": "$gt",
    "$gte": "$lt",
    "$lt": "$gte",
    "$in": "$nin",
    "$nin": "$in",
}

#: The operators Chroma can evaluate on metadata.
SUPPORTED_OPERATORS = tuple(_OPERATORS)


def to_chroma_where(filters: MetadataFilters | None) -> dict[str, Any] | None:
    """Translate MetadataFilters (nested, with AND, OR and NOT) into a Chroma `where`.

    NOT means "none of the filters match" (as in LlamaIndex's own stores); Chroma has no $not,
    so it is pushed down with De Morgan's laws onto the negated operators.

    Returns:
        The where clause, or None when there is nothing to filter on.

    Raises:
        ValueError: an operator Chroma cannot evaluate on metadata (any, all, text_match,
            contains, is_empty), naming it and the supported ones.
    """
    if filters is None or not filters.filters:
        return None
    return _translate(filters, negate=False)


def _translate(filters: MetadataFilters, negate: bool) -> dict[str, Any]:
    condition = filters.condition or FilterCondition.AND
    # NOT(a, b) = AND(not a, not b); negating a group swaps AND and OR.
    child_negate = negate != (condition == FilterCondition.NOT)
    joiner = "$or" if (condition == FilterCondition.OR) != negate else "$and"
    parts = [
        _translate(f, child_negate) if isinstance(f, MetadataFilters) else _one(f, child_negate)
        for f in filters.filters
    ]
    parts = [p for p in parts if p]
    if len(parts) == 1:
        return parts[0]
    return {joiner: parts} if parts else {}


def _one(item: MetadataFilter, negate: bool) -> dict[str, Any]:
    op = _OPERATORS.get(FilterOperator(item.operator))
    if op is None:
        supported = ", ".join(o.value for o in SUPPORTED_OPERATORS)
        raise ValueError(
            f"metadata filter {item.key!r} uses operator {FilterOperator(item.operator).value!r}, "
            f"which Chroma cannot evaluate on metadata; use one of: {supported}"
        )
    if op in ("$in", "$nin") and not isinstance(item.value, list):
        raise ValueError(f"metadata filter {item.key!r}: {op[1:]} needs a list value")
    return {item.key: {_NEGATED[op] if negate else op: item.value}}
