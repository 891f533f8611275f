"""examples/streamlit_app.py under Streamlit's AppTest, on the real demo model and Chroma."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

import pytest
from streamlit.testing.v1 import AppTest

from clip_multimodal.index import ImageIndex

APP = Path(__file__).parents[1] / "examples" / "streamlit_app.py"


@pytest.fixture
def library(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, demo_encoder: Any, demo_images_dir: Path
) -> ImageIndex:
    """The demo images indexed where the app will look, told to it by environment."""
    name = f"st-{uuid.uuid4().hex[:12]}"
    monkeypatch.setenv("CLIP_MULTIMODAL_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("CLIP_MULTIMODAL_COLLECTION", name)
    monkeypatch.delenv("CLIP_MULTIMODAL_MODEL", raising=False)
    index = ImageIndex(demo_encoder, name, path=tmp_path / "chroma")
    index.index_folder(demo_images_dir, progress=False)
    return index


def test_typing_a_query_shows_matching_images(library: ImageIndex) -> None:
    at = AppTest.from_file(str(APP), default_timeout=120).run()
    assert not at.exception
    assert "48 images" in at.caption[0].value
    assert not at.image  # nothing until a query is typed
    at.text_input[0].input("a handwritten seven").run()
    assert not at.exception
    captions = [c for image in at.image for c in image.captions]
    assert len(captions) == 8  # the slider's default
    assert any("seven-000.png" in c for c in captions[:3]), captions
    scores = [float(c.split(" · ")[0]) for c in captions]
    assert scores == sorted(scores, reverse=True)
    at.slider[0].set_value(3).run()
    assert len([c for image in at.image for c in image.captions]) == 3


def test_an_empty_library_says_how_to_fill_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CLIP_MULTIMODAL_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("CLIP_MULTIMODAL_COLLECTION", f"st-empty-{uuid.uuid4().hex[:8]}")
    at = AppTest.from_file(str(APP), default_timeout=120).run()
    assert not at.exception
    assert "clip-multimodal index DIR" in at.info[0].value
    assert not at.text_input
