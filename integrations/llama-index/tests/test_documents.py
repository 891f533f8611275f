"""Images from documents through LlamaIndex: ImageNodes that cite the document, and the fused
text+image retriever."""

from __future__ import annotations

import base64
import io
import uuid
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from llama_index.core.base.base_retriever import BaseRetriever
from llama_index.core.schema import ImageNode, NodeWithScore, QueryBundle, TextNode
from llama_index.retrievers.clip_multimodal import CLIPImageRetriever, TextImageFusionRetriever
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
def pdf_and_index(
    demo_encoder: Any, tmp_path_factory: pytest.TempPathFactory
) -> tuple[Path, ImageIndex]:
    root = tmp_path_factory.mktemp("li-docs")
    (root / "docs").mkdir()
    pdf = _shapes_pdf(root / "docs" / "shapes.pdf")
    index = ImageIndex(demo_encoder, f"li-docs-{uuid.uuid4().hex[:8]}", path=root / "db")
    assert index.index_folder(root / "docs", progress=False).document_images == 2
    return pdf, index


def test_image_nodes_cite_the_document_and_carry_the_pixels(
    pdf_and_index: tuple[Path, ImageIndex],
) -> None:
    pdf, index = pdf_and_index
    retriever = CLIPImageRetriever(index=index, image_similarity_top_k=1)
    (found,) = retriever.text_to_image_retrieve("a large red circle")
    node = found.node
    assert isinstance(node, ImageNode)
    assert node.ref_doc_id == str(pdf)
    meta = node.metadata
    assert (meta["source"], meta["page"], meta["source_kind"]) == (str(pdf), 3, "embedded")
    assert (meta["file_name"], meta["page_label"], meta["file_path"]) == (
        "shapes.pdf",
        "3",
        str(pdf),
    )
    assert node.image_path is None and node.image_mimetype == "image/png"
    assert node.image is not None
    picture = Image.open(io.BytesIO(base64.b64decode(node.image)))
    assert picture.size == (64, 64)
    assert "page_label: 3" in node.get_content(metadata_mode="llm")  # type: ignore[arg-type]


class _FixedText(BaseRetriever):
    def _retrieve(self, query_bundle: QueryBundle) -> list[NodeWithScore]:
        return [
            NodeWithScore(node=TextNode(id_="t1", text="squares outnumber circles"), score=3.0),
            NodeWithScore(node=TextNode(id_="t2", text="the rains came late"), score=1.0),
        ]


def _fused_pages(nodes: list[NodeWithScore]) -> list[tuple[str, Any]]:
    return [
        (n.node.metadata["retrieved_by"], n.node.metadata.get("page", n.node.node_id))
        for n in nodes
    ]


def test_fusion_by_weighted_reciprocal_rank(pdf_and_index: tuple[Path, ImageIndex]) -> None:
    _, index = pdf_and_index
    images = CLIPImageRetriever(index=index, image_similarity_top_k=2)
    fused = TextImageFusionRetriever(_FixedText(), images)
    nodes = fused.retrieve("a large blue square")
    assert _fused_pages(nodes) == [("text", "t1"), ("image", 2), ("text", "t2"), ("image", 3)]
    assert nodes[0].score == pytest.approx(1 / 61)
    weighted = TextImageFusionRetriever(_FixedText(), images, weights=(1.0, 2.0), top_k=2)
    assert _fused_pages(weighted.retrieve("a large blue square")) == [("image", 2), ("image", 3)]


async def test_fusion_async(pdf_and_index: tuple[Path, ImageIndex]) -> None:
    _, index = pdf_and_index
    fused = TextImageFusionRetriever(
        _FixedText(), CLIPImageRetriever(index=index, image_similarity_top_k=2)
    )
    nodes = await fused.aretrieve("a large red circle")
    assert _fused_pages(nodes) == _fused_pages(fused.retrieve("a large red circle"))


def test_fusion_refuses_bad_weights(pdf_and_index: tuple[Path, ImageIndex]) -> None:
    images = CLIPImageRetriever(index=pdf_and_index[1])
    with pytest.raises(ValueError, match="weights"):
        TextImageFusionRetriever(_FixedText(), images, weights=(-1.0, 1.0))
