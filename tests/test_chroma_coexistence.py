"""Our Chroma clients live beside the user's own in one process, in either order.

Chroma keeps one system per path and refuses a second client there with other settings. These
tests run as users do: no telemetry variable in the environment.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from clip_multimodal.index import ImageIndex


@pytest.fixture(autouse=True)
def _as_users_run(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("ANONYMIZED_TELEMETRY", raising=False)


def _round_trip(index: ImageIndex, client: Any, image: Path) -> None:
    """What one writes, the other reads."""
    (id_,) = [i for i in index.add([str(image)]).ids if i is not None]
    assert client.get_collection(index.name).get(ids=[id_])["ids"] == [id_]
    assert index.search(str(image), k=1)[0].id == id_


def _first_image(demo_images_dir: Path) -> Path:
    return sorted(demo_images_dir.rglob("*.png"))[0]


def test_the_users_persistent_client_first_then_an_index(
    demo_encoder: Any, demo_images_dir: Path, tmp_path: Path
) -> None:
    import chromadb

    client = chromadb.PersistentClient(str(tmp_path))
    index = ImageIndex(demo_encoder, "photos", path=tmp_path)
    _round_trip(index, client, _first_image(demo_images_dir))


def test_an_index_first_then_the_users_persistent_client(
    demo_encoder: Any, demo_images_dir: Path, tmp_path: Path
) -> None:
    import chromadb

    index = ImageIndex(demo_encoder, "photos", path=tmp_path)
    client = chromadb.PersistentClient(str(tmp_path))
    _round_trip(index, client, _first_image(demo_images_dir))


def test_an_index_reuses_the_settings_of_the_users_client(
    demo_encoder: Any, demo_images_dir: Path, tmp_path: Path
) -> None:
    import chromadb
    from chromadb.config import Settings

    client = chromadb.PersistentClient(str(tmp_path), settings=Settings(allow_reset=True))
    index = ImageIndex(demo_encoder, "photos", path=tmp_path)
    _round_trip(index, client, _first_image(demo_images_dir))
    assert index.client is not None and index.client.get_settings().allow_reset is True
