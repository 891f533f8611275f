"""Fixtures for the LangChain integration tests (the root conftest provides the models)."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

import pytest


@pytest.fixture(scope="session")
def lc_demo_index(
    demo_encoder: Any, demo_images_dir: Path, tmp_path_factory: pytest.TempPathFactory
) -> Any:
    """An embedded ImageIndex of the held-out demo images, on the real demo model."""
    from clip_multimodal.index import ImageIndex

    path = tmp_path_factory.mktemp("lc-demo-index")
    index = ImageIndex(demo_encoder, collection=f"lc-demo-{uuid.uuid4().hex[:8]}", path=path)
    report = index.index_folder(demo_images_dir, progress=False)
    assert not report.failed
    return index


@pytest.fixture(scope="session")
def clip_embeddings(demo_encoder: Any) -> Any:
    """CLIPEmbeddings over the session's demo encoder."""
    from langchain_clip_multimodal import CLIPEmbeddings

    return CLIPEmbeddings(encoder=demo_encoder)


@pytest.fixture(scope="session")
def demo_image(demo_images_dir: Path) -> Any:
    """`demo_image(group, stem)`: the first demo image of a kind, e.g. ("digits", "seven")."""

    def find(group: str, stem: str) -> Path:
        found = sorted((demo_images_dir / group).glob(f"{stem}-*.png"))
        assert found, f"no demo image {group}/{stem}-* in {demo_images_dir}"
        return found[0]

    return find


@pytest.fixture
def colour_pngs(tmp_path: Path) -> list[Path]:
    """Four small PNGs of distinct colours and sizes."""
    from PIL import Image

    folder = tmp_path / "colours"
    folder.mkdir()
    paths = []
    for i, colour in enumerate(["red", "green", "blue", "yellow"]):
        path = folder / f"{colour}.png"
        Image.new("RGB", (600 + 100 * i, 300), colour).save(path)
        paths.append(path)
    return paths


@pytest.fixture
def fake_index(fake_encoder: Any, colour_pngs: list[Path], tmp_path: Path) -> Any:
    """An embedded ImageIndex on the fake encoder holding `colour_pngs` (for plumbing tests)."""
    from clip_multimodal.index import ImageIndex

    index = ImageIndex(fake_encoder, collection="colours", path=tmp_path / "chroma")
    metadatas = [
        {"warm": colour in ("red", "yellow")} for colour in ("red", "green", "blue", "yellow")
    ]
    report = index.add([str(p) for p in colour_pngs], metadatas)
    assert report.added == 4
    return index
