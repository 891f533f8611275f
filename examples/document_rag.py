"""Multimodal RAG over PDFs: a question's text chunks and figures, fused, with cited pages.

    python examples/document_rag.py "Which report shows a large green square?"
    python examples/document_rag.py "a zebra" --docs ~/reports --chat-model openai:gpt-4o-mini

By default the script writes three small PDF reports (text pages, and pages holding a
figure from the demo's shapes, digits and animals) to the data folder, offline, with
reportlab. It indexes their text page by page in a LangChain `InMemoryVectorStore` with an
offline hashing embedder (any text embedder works), and their figures with clip-multimodal
(the bundled demo model): each figure is a record citing its document and page. One
`TextImageRetriever` fuses the top text chunks and the top figures by reciprocal rank; the
chat model gets the chunks as text and the figures as image content blocks, and the script
prints the answer and the pages it cited. Without --chat-model it runs offline and prints
what it would send.
"""

from __future__ import annotations

import argparse
import hashlib
import re
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from langchain_clip_multimodal import (
    CLIPImageRetriever,
    TextImageRetriever,
    documents_to_image_blocks,
)
from langchain_core.documents import Document
from langchain_core.embeddings import Embeddings
from langchain_core.messages import BaseMessage, HumanMessage, SystemMessage
from langchain_core.output_parsers import StrOutputParser
from langchain_core.runnables import Runnable, RunnableLambda, RunnablePassthrough
from langchain_core.vectorstores import InMemoryVectorStore
from PIL import Image

_HERE = str(Path(__file__).resolve().parent)
if _HERE not in sys.path:  # run by runpy or imported, not as a script: find _common beside it
    sys.path.insert(0, _HERE)

from _common import load_chat_model  # noqa: E402

SYSTEM = (
    "Answer from the report excerpts and figures you are shown. Cite each as 'document, page N'."
)

#: The generated reports: (file, title, pages); a page is its text and an optional figure
#: ("shapes:large green square", "digits:seven", "animals:zebra").
REPORTS: list[tuple[str, str, list[tuple[str, str | None]]]] = [
    (
        "geometry.pdf",
        "Geometry survey",
        [
            ("The geometry survey counts the shapes drawn on the test sheets.", None),
            ("Figure 1 shows the shape most often drawn.", "shapes:large green square"),
            ("Conclusion: squares outnumber every other shape.", None),
        ],
    ),
    (
        "handwriting.pdf",
        "Handwriting study",
        [
            ("The handwriting study collects digits written by pupils.", None),
            ("Figure 2 shows the digit pupils found hardest to write.", "digits:seven"),
        ],
    ),
    (
        "safari.pdf",
        "Safari field notes",
        [
            ("Field notes from the waterhole, kept every morning.", None),
            ("Figure 3 shows the animal seen most often at dawn.", "animals:zebra"),
            ("The rains came late this year.", None),
        ],
    ),
]


class HashingEmbeddings(Embeddings):
    """An offline bag-of-words text embedder: each word hashed into one of `dim` buckets."""

    def __init__(self, dim: int = 512) -> None:
        self.dim = dim

    def embed_documents(self, texts: list[str]) -> list[list[float]]:
        return [self.embed_query(text) for text in texts]

    def embed_query(self, text: str) -> list[float]:
        vector = np.zeros(self.dim, dtype=np.float32)
        for word in re.findall(r"[a-z]+", text.lower()):
            vector[int(hashlib.sha1(word.encode()).hexdigest(), 16) % self.dim] += 1.0
        norm = float(np.linalg.norm(vector))
        return (vector / norm if norm else vector).tolist()


def figure(spec: str) -> Image.Image:
    """A held-out demo image (never seen in training) for "group:label"."""
    from clip_multimodal.datasets import animal_samples, digit_samples, shapes_samples

    group, label = spec.split(":")
    samples = {
        "shapes": lambda: shapes_samples("heldout", n=16),
        "digits": lambda: digit_samples("heldout"),
        "animals": lambda: animal_samples("heldout"),
    }
    for sample in samples[group]():
        if sample.label == label:
            return sample.image
    raise ValueError(f"no held-out {group} image of {label!r}")


def write_reports(folder: Path) -> list[Path]:
    """The demo PDFs (text pages and figure pages), written with reportlab."""
    from reportlab.lib.utils import ImageReader
    from reportlab.pdfgen import canvas

    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for name, title, pages in REPORTS:
        pdf = canvas.Canvas(str(folder / name), pagesize=(420, 420), invariant=1)
        pdf.setTitle(title)
        for text, spec in pages:
            pdf.setFont("Helvetica", 11)
            pdf.drawString(30, 380, text)
            if spec is not None:
                pdf.drawImage(ImageReader(figure(spec)), 110, 60, 200, 200)
            pdf.showPage()
        pdf.save()
        paths.append(folder / name)
    return paths


def text_chunks(paths: Sequence[Path]) -> list[Document]:
    """One chunk per page, with LangChain's usual `source` and `page` (1-based here)."""
    from pypdf import PdfReader

    chunks = []
    for path in paths:
        for number, page in enumerate(PdfReader(path).pages, 1):
            text = page.extract_text().strip()
            if text:
                meta = {"source": str(path), "page": number}
                chunks.append(Document(page_content=text, metadata=meta))
    return chunks


def cite(doc: Document) -> str:
    """ "geometry.pdf, page 2" for a text chunk or a figure."""
    return f"{Path(doc.metadata['source']).name}, page {doc.metadata['page']}"


def to_messages(inputs: dict[str, Any], max_side: int = 256) -> list[BaseMessage]:
    """The question, the text chunks with their citations, then each figure as an image."""
    docs: list[Document] = inputs["docs"]
    texts = [d for d in docs if d.metadata["retrieved_by"] == "text"]
    figures = [d for d in docs if d.metadata["retrieved_by"] == "image"]
    lines = [f"[{cite(d)}] {d.page_content}" for d in texts]
    blocks: list[Any] = [{"type": "text", "text": f"{inputs['question']}\n\n" + "\n".join(lines)}]
    for doc, block in zip(figures, documents_to_image_blocks(figures, max_side), strict=True):
        blocks += [{"type": "text", "text": f"Figure from {cite(doc)}:"}, block]
    return [SystemMessage(SYSTEM), HumanMessage(content_blocks=blocks)]


def build_chain(
    retriever: TextImageRetriever, chat_model: Runnable[Any, Any], max_side: int = 256
) -> Runnable[str, dict[str, Any]]:
    """question -> fused chunks and figures -> one multimodal message -> answer, citations."""
    prompt: Runnable[dict[str, Any], list[BaseMessage]] = RunnableLambda(
        lambda inputs: to_messages(inputs, max_side)
    )
    answer = prompt | chat_model | StrOutputParser()
    return {"question": RunnablePassthrough(), "docs": retriever} | RunnablePassthrough.assign(
        answer=answer, cited=RunnableLambda(lambda x: list(dict.fromkeys(map(cite, x["docs"]))))
    )


def describe_messages(messages: list[BaseMessage]) -> str:
    """The offline stand-in for a chat model: what it would have been sent."""
    lines = []
    for message in messages:
        for block in message.content_blocks:
            if block["type"] == "text":
                lines.append(f"[{message.type}] {block['text']}")
            elif block["type"] == "image":
                lines.append(f"[{message.type}] <image {block.get('mime_type')}>")
    return "\n".join(lines)


def build_retriever(docs_folder: Path, data_dir: Path, model: str | None) -> TextImageRetriever:
    """Text chunks in a text store, figures in a clip-multimodal index, one fused retriever."""
    from clip_multimodal import CLIPEncoder, ImageIndex
    from clip_multimodal.models import DEMO_MODEL

    paths = sorted(docs_folder.glob("*.pdf"))
    store = InMemoryVectorStore(HashingEmbeddings())
    store.add_documents(text_chunks(paths))
    index = ImageIndex(CLIPEncoder(model or DEMO_MODEL, device="cpu"), "figures", data_dir)
    report = index.index_folder(docs_folder, progress=False)
    print(f"indexed {docs_folder}: {report}", file=sys.stderr)
    return TextImageRetriever(
        text_retriever=store.as_retriever(search_kwargs={"k": 2}),
        image_retriever=CLIPImageRetriever(index=index, k=1),
    )


def main(argv: list[str] | None = None, chat_model: Runnable[Any, Any] | None = None) -> str:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("question", help="a question whose answer is in a figure")
    parser.add_argument("--docs", type=Path, help="folder of PDFs (default: the demo reports)")
    parser.add_argument("--data-dir", type=Path, default=Path(".data/document-rag"))
    parser.add_argument("--model", default=None, help="CLIP model (default: the demo model)")
    parser.add_argument("--chat-model", help="provider:model, e.g. openai:gpt-4o-mini")
    args = parser.parse_args(argv)
    docs = args.docs
    if docs is None:
        docs = args.data_dir / "reports"
        write_reports(docs)
    retriever = build_retriever(docs, args.data_dir / "chroma", args.model)
    if chat_model is None:
        chat_model = (
            load_chat_model(args.chat_model)
            if args.chat_model
            else RunnableLambda(describe_messages)
        )
    result = build_chain(retriever, chat_model).invoke(args.question)
    print(result["answer"])
    print("cited: " + "; ".join(result["cited"]))
    return str(result["answer"])


if __name__ == "__main__":
    main()
