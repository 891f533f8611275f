"""Images from documents through LangChain: provenance in Documents, content blocks, and the
fused text+image retriever."""

from __future__ import annotations

import base64
import io
import uuid
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from langchain_clip_multimodal import (
    CLIPImageRetriever,
    TextImageRetriever,
    documents_to_image_blocks,
)
from langchain_core.callbacks import CallbackManagerForRetrieverRun
from langchain_core.documents import Document
from langchain_core.retrievers import BaseRetriever
from PIL import Image

from clip_multimodal.datasets import Combo
from clip_multimodal.datasets.shapes import draw_shape
from clip_multimodal.index import ImageIndex


def _shapes_pdf(path: Path) -> Path:
    """Page 1 text only, page 2 a large blue square, page 3 a large red circle."""
    from reportlab.lib.utils import ImageReader
    from reportlab.pdfgen import canvas

    rng = np.random.default_rng(0)
    pdf = canvas.Canvas(str(path), pagesize=(400, 400), invariant=1)
    pdf.setTitle("Shapes")
    for text, combo in [
        ("intro", None),
        ("a square", Combo("blue", "square", "large")),
        ("a circle", Combo("red", "circle", "large")),
    ]:
        pdf.drawString(20, 370, text)
        if combo is not None:
            pdf.drawImage(ImageReader(draw_shape(combo, "dark", rng)), 50, 50, 200, 200)
        pdf.showPage()
    pdf.save()
    return path


@pytest.fixture(scope="module")
def doc_index(demo_encoder: Any, tmp_path_factory: pytest.TempPathFactory) -> ImageIndex:
    root = tmp_path_factory.mktemp("lc-docs")
    (root / "docs").mkdir()
    _shapes_pdf(root / "docs" / "shapes.pdf")
    index = ImageIndex(demo_encoder, f"lc-docs-{uuid.uuid4().hex[:8]}", path=root / "db")
    assert index.index_folder(root / "docs", progress=False).document_images == 2
    return index


def test_documents_cite_source_and_page_and_become_image_blocks(doc_index: ImageIndex) -> None:
    (doc,) = CLIPImageRetriever(index=doc_index, k=1).invoke("a large red circle")
    assert doc.metadata["source"].endswith("shapes.pdf") and doc.metadata["page"] == 3
    assert doc.page_content.startswith("image: shapes.pdf, page 3 (image/png, 64x64)")
    (block,) = documents_to_image_blocks([doc], max_side=None)
    picture = Image.open(io.BytesIO(base64.b64decode(block["base64"])))  # type: ignore[typeddict-item]
    red, _, blue = np.asarray(picture.convert("RGB"), dtype=float).reshape(-1, 3).max(axis=0)
    assert picture.size == (64, 64) and red > 200 > blue


class _FixedRetriever(BaseRetriever):
    """A text retriever with a fixed answer (the fusion's unit under test is the ranking)."""

    docs: list[Document]

    def _get_relevant_documents(
        self, query: str, *, run_manager: CallbackManagerForRetrieverRun
    ) -> list[Document]:
        return self.docs


def _texts() -> _FixedRetriever:
    return _FixedRetriever(
        docs=[Document("squares outnumber circles", id="t1"), Document("the rains", id="t2")]
    )


def test_fusion_interleaves_by_reciprocal_rank(doc_index: ImageIndex) -> None:
    images = CLIPImageRetriever(index=doc_index, k=2)
    fused = TextImageRetriever(text_retriever=_texts(), image_retriever=images)
    docs = fused.invoke("a large blue square")
    origins = [(d.metadata["retrieved_by"], d.metadata.get("page", d.id)) for d in docs]
    assert origins == [("text", "t1"), ("image", 2), ("text", "t2"), ("image", 3)]
    assert docs[0].metadata["fusion_score"] == pytest.approx(1 / 61)

    weighted = TextImageRetriever(
        text_retriever=_texts(), image_retriever=images, weights=(1.0, 2.0), k=2
    )
    top = weighted.invoke("a large blue square")
    assert [(d.metadata["retrieved_by"], d.metadata.get("page", d.id)) for d in top] == [
        ("image", 2),
        ("image", 3),
    ]


async def test_fusion_async_matches_sync(doc_index: ImageIndex) -> None:
    fused = TextImageRetriever(
        text_retriever=_texts(), image_retriever=CLIPImageRetriever(index=doc_index, k=2)
    )
    assert await fused.ainvoke("a large red circle") == fused.invoke("a large red circle")


def test_fusion_refuses_bad_weights(doc_index: ImageIndex) -> None:
    images = CLIPImageRetriever(index=doc_index)
    with pytest.raises(ValueError, match="weights"):
        TextImageRetriever(text_retriever=_texts(), image_retriever=images, weights=(0.0, 0.0))
