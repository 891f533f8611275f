"""`open_index`, the one way the CLI and the server open the index their options name, and
`per_input`, the per-input list check the core and the LangChain store share."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from clip_multimodal.errors import IndexNotFoundError, ReadOnlyIndexError
from clip_multimodal.index import ImageIndex, open_index, per_input
from clip_multimodal.testing import FakeEncoder


def _name() -> str:
    return f"open-{uuid.uuid4().hex[:12]}"  # unique per test: the HTTP server is shared


def test_a_client_given_wins_over_a_path(chroma_client: Any, tmp_path: Path) -> None:
    unused = tmp_path / "never-created"
    index = open_index(FakeEncoder(), _name(), path=unused, client=chroma_client)

    index.add_embeddings(np.ones((1, FakeEncoder().dim)), ["a"])

    assert index.client is chroma_client and index.count() == 1
    assert not unused.exists()


def test_a_server_wins_over_the_embedded_default_path(
    chroma_server: tuple[str, int], tmp_path: Path
) -> None:
    host, port = chroma_server
    unused = tmp_path / "never-created"

    index = open_index(FakeEncoder(), _name(), path=unused, host=host, port=port)

    assert index.count() == 0 and not unused.exists()


def test_without_client_or_server_the_index_is_embedded_at_path(tmp_path: Path) -> None:
    name = _name()
    open_index(FakeEncoder(), name, path=tmp_path / "chroma").add_embeddings(
        np.ones((2, FakeEncoder().dim)), ["a", "b"]
    )

    again = ImageIndex(FakeEncoder(), name, tmp_path / "chroma")

    assert again.count() == 2


def test_read_only_opens_an_existing_collection_and_never_creates_one(tmp_path: Path) -> None:
    name, path = _name(), tmp_path / "chroma"
    with pytest.raises(IndexNotFoundError, match=name):
        open_index(FakeEncoder(), name, path=path, read_only=True)
    ImageIndex(FakeEncoder(), name, path)

    index = open_index(FakeEncoder(), name, path=path, read_only=True)

    assert index.read_only
    with pytest.raises(ReadOnlyIndexError):
        index.delete(ids=["a"])


def test_per_input_names_the_list_and_the_counts() -> None:
    assert per_input("ids", None, 2) == [None, None]
    assert per_input("ids", ("a", "b"), 2) == ["a", "b"]
    with pytest.raises(ValueError, match="metadatas has 1 entries for 2 texts; give one per text"):
        per_input("metadatas", [{}], 2, "text")
