"""Index records as LangChain `Document`s: images get a short description, never base64."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import PurePath
from typing import Any

from langchain_core.documents import Document

from clip_multimodal.documents import Provenance
from clip_multimodal.images import describe_source

__all__ = ["TEXT", "describe_image", "record_document"]

#: The `modality` metadata value of text records (images carry "image").
TEXT = "text"


def describe_image(uri: str | None, metadata: Mapping[str, Any]) -> str:
    """A one-line description, e.g. `image: digits/seven-003.png (image/png, 64x64)`, or
    for an image from a document `image: report.pdf, page 7 (image/png, 640x480)`."""
    provenance = Provenance.from_metadata(metadata)
    if provenance is not None:
        name = provenance.label
    else:
        name = _short_name(uri) if uri else "<image without uri>"
    details = []
    if isinstance(metadata.get("mime"), str):
        details.append(str(metadata["mime"]))
    width, height = metadata.get("width"), metadata.get("height")
    if isinstance(width, int) and isinstance(height, int):
        details.append(f"{width}x{height}")
    return f"image: {name} ({', '.join(details)})" if details else f"image: {name}"


def record_document(
    id_: str,
    uri: str | None,
    metadata: Mapping[str, Any],
    text: str | None,
    extra: Mapping[str, Any] | None = None,
) -> Document:
    """A record as a Document.

    Text records give back their text and exactly the metadata they were added with. Image
    records keep the index's metadata (uri, mime, width, height, ..., modality="image"),
    and their page content describes the image; a caption stored with it follows.
    """
    meta = dict(metadata)
    if meta.get("modality") == TEXT:
        del meta["modality"]
        return Document(page_content=text or "", metadata={**meta, **(extra or {})}, id=id_)
    content = describe_image(uri, meta)
    if text:
        content = f"{content}: {text}"
    if uri is not None:
        meta["uri"] = uri
    return Document(page_content=content, metadata={**meta, **(extra or {})}, id=id_)


def _short_name(uri: str) -> str:
    if "://" in uri:
        return describe_source(uri)  # keeps the URL, drops any credentials in it
    path = PurePath(uri)
    return f"{path.parent.name}/{path.name}" if path.parent.name else path.name
