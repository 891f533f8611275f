"""examples/document_rag.py end to end: generated PDFs, fused text and figures, cited pages."""

from __future__ import annotations

import base64
import io
import runpy
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from langchain_core.language_models.fake_chat_models import GenericFakeChatModel
from langchain_core.messages import AIMessage, BaseMessage, HumanMessage
from PIL import Image
from pydantic import Field

from clip_multimodal.documents import read_document_image

EXAMPLES = Path(__file__).resolve().parents[4] / "examples"


class RecordingChatModel(GenericFakeChatModel):
    """Answers from a script and records every message list it is sent."""

    seen: list[list[BaseMessage]] = Field(default_factory=list)

    def _generate(self, messages: list[BaseMessage], *args: Any, **kwargs: Any) -> Any:
        self.seen.append(list(messages))
        return super()._generate(messages, *args, **kwargs)


def _pixels(data: bytes, size: tuple[int, int]) -> np.ndarray:
    image = Image.open(io.BytesIO(data)).convert("RGB").resize(size)
    return np.asarray(image, dtype=np.float32)


@pytest.mark.parametrize(
    ("question", "document"),
    [
        ("Where is the handwritten digit seven?", "handwriting.pdf"),
        ("Which report shows a large green square?", "geometry.pdf"),
        ("Which animal is seen at dawn, a zebra?", "safari.pdf"),
    ],
)
def test_the_right_pages_figure_reaches_the_chat_model(
    question: str, document: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    example = runpy.run_path(str(EXAMPLES / "document_rag.py"))
    model = RecordingChatModel(messages=iter([AIMessage("See the figure.")]))
    answer = example["main"]([question, "--data-dir", str(tmp_path)], chat_model=model)
    assert answer == "See the figure."
    assert f"{document}, page 2" in capsys.readouterr().out.split("cited: ")[1]

    (messages,) = model.seen
    human = messages[-1]
    assert isinstance(human, HumanMessage)
    blocks = human.content_blocks
    images = [b for b in blocks if b["type"] == "image"]
    assert len(images) == 1
    caption = blocks[blocks.index(images[0]) - 1]
    assert caption["type"] == "text" and caption["text"] == f"Figure from {document}, page 2:"
    sent = base64.b64decode(images[0]["base64"])  # type: ignore[typeddict-item]
    reports = tmp_path / "reports"
    size = Image.open(io.BytesIO(sent)).size
    distance = {
        pdf.name: float(
            np.abs(
                _pixels(sent, size) - _pixels(read_document_image(f"{pdf}#page=2&image=0"), size)
            ).mean()
        )
        for pdf in reports.glob("*.pdf")
    }
    assert min(distance, key=distance.__getitem__) == document, distance
    assert distance[document] < 8.0  # the very figure on the cited page, JPEG-encoded
