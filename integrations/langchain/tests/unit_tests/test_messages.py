"""Retrieved documents as standard image content blocks for vision chat models."""

from __future__ import annotations

import base64
import io
from pathlib import Path

import numpy as np
import pytest
from langchain_clip_multimodal import documents_to_image_blocks, image_message
from langchain_core.documents import Document
from langchain_core.messages import HumanMessage
from PIL import Image


def _doc(path: Path) -> Document:
    return Document(page_content=f"image: {path.name}", metadata={"uri": str(path)})


def test_blocks_are_resized_base64_images(colour_pngs: list[Path]) -> None:
    blocks = documents_to_image_blocks([_doc(p) for p in colour_pngs[:2]], max_side=128)
    assert len(blocks) == 2
    for block, path in zip(blocks, colour_pngs, strict=False):
        assert block["type"] == "image"
        assert block["mime_type"] == "image/jpeg"
        image = Image.open(io.BytesIO(base64.b64decode(block["base64"])))
        original = Image.open(path)
        assert image.format == "JPEG"
        assert max(image.size) == 128
        assert image.size[0] / image.size[1] == pytest.approx(
            original.size[0] / original.size[1], rel=0.02
        )
    red, green = (Image.open(io.BytesIO(base64.b64decode(b["base64"]))) for b in blocks)
    assert np.asarray(red)[5, 5].argmax() == 0  # still red
    assert np.asarray(green)[5, 5].argmax() == 1  # still green


def test_message_carries_the_text_then_the_images(colour_pngs: list[Path]) -> None:
    message = image_message("Which is red?", [_doc(colour_pngs[0])], max_side=64)
    assert isinstance(message, HumanMessage)
    kinds = [block["type"] for block in message.content_blocks]
    assert kinds == ["text", "image"]
    assert message.content_blocks[0]["text"] == "Which is red?"  # type: ignore[typeddict-item]


def test_documents_without_uri_are_refused_by_name() -> None:
    with pytest.raises(ValueError, match="'t1' has no 'uri'"):
        documents_to_image_blocks([Document(page_content="foo", id="t1")])


def test_unreadable_images_raise_the_core_error(tmp_path: Path) -> None:
    from clip_multimodal.errors import ImageLoadError

    with pytest.raises(ImageLoadError, match=r"gone\.png"):
        documents_to_image_blocks([_doc(tmp_path / "gone.png")])
