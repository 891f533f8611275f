"""A property of the query rule: classifying any text is fast and never raises.

Needs `hypothesis` (requirements-dev.txt).
"""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from clip_multimodal.images import _classify, is_image_query
from tests.test_query_rule import timed

_HOSTILE_PIECES = st.sampled_from(
    ["\n", "\r", " ", "\t", "a", "Z", "0", "+", "/", "\\", "=", ".", "~", ":", "://", "data:"]
)


@st.composite
def _runs(draw: st.DrawFn) -> str:
    """Long runs of the characters the classification looks at, to expose backtracking."""
    parts = draw(st.lists(st.tuples(_HOSTILE_PIECES, st.integers(1, 20_000)), max_size=6))
    return "".join(piece * count for piece, count in parts) + draw(st.text(max_size=3))


@settings(max_examples=200, deadline=None)
@given(st.one_of(st.text(), _runs()))
def test_classification_of_any_text_is_fast_and_never_raises(text: str) -> None:
    assert timed(text) < 0.5
    assert isinstance(is_image_query(text), bool)
    assert _classify(text) in ("data", "url", "scheme", "path", "base64")
