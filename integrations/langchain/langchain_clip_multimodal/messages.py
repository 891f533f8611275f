"""Retrieved image documents as multimodal chat-message content, for vision models."""

from __future__ import annotations

from collections.abc import Sequence

from langchain_core.documents import Document
from langchain_core.messages import HumanMessage
from langchain_core.messages.content import ImageContentBlock, create_image_block

from clip_multimodal.images import to_data_uri

__all__ = ["documents_to_image_blocks", "image_message"]


def documents_to_image_blocks(
    docs: Sequence[Document], max_side: int | None = 512
) -> list[ImageContentBlock]:
    """LangChain standard image content blocks for retrieved image documents.

    Each image is read from its `uri` metadata only now, shrunk to fit `max_side` (aspect
    kept) and re-encoded as base64 JPEG: `{"type": "image", "base64": ..., "mime_type":
    "image/jpeg"}`. Put the blocks in `HumanMessage(content=[...])` for any chat model that
    takes images.

    Args:
        docs: documents from `CLIPImageRetriever` or `CLIPChroma` image records.
        max_side: the longest side in pixels after resizing (None keeps the size).

    Raises:
        ValueError: a document has no `uri` metadata (a text record, or an image added as
            bytes); the message names it.
        clip_multimodal.ImageLoadError: an image can no longer be read.
    """
    return [_image_block(doc, max_side) for doc in docs]


def image_message(text: str, docs: Sequence[Document], max_side: int | None = 512) -> HumanMessage:
    """A `HumanMessage` with the text first, then one image block per document."""
    blocks = documents_to_image_blocks(docs, max_side)
    return HumanMessage(content_blocks=[{"type": "text", "text": text}, *blocks])


def _image_block(doc: Document, max_side: int | None) -> ImageContentBlock:
    uri = doc.metadata.get("uri")
    if not isinstance(uri, str) or not uri:
        raise ValueError(
            f"document {doc.id or doc.page_content[:60]!r} has no 'uri' metadata; only image "
            "documents from CLIPImageRetriever or CLIPChroma can become image blocks"
        )
    header, _, payload = to_data_uri(uri, max_side=max_side).partition(",")
    mime = header.removeprefix("data:").removesuffix(";base64")
    return create_image_block(base64=payload, mime_type=mime)
