"""The streaming extractor that picks the format, and the reader of one document image URI."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

from clip_multimodal.documents._types import (
    DOCUMENT_EXTENSIONS,
    DocumentOptions,
    Extracted,
    document_fragment,
)
from clip_multimodal.errors import DocumentLoadError

__all__ = ["extract_images", "read_document_image"]


def extract_images(
    path: str | os.PathLike[str], options: DocumentOptions | None = None
) -> Iterator[Extracted]:
    """Stream a document's images page by page, with a failure in place of each unreadable one.

    Raises (from the first `next`):
        DocumentLoadError: the document cannot be opened (encrypted, truncated, not a
            document), naming the file and the reason.
        MissingDependencyError: the `documents` extra is not installed.
    """
    options = options or DocumentOptions()
    source = str(Path(path).expanduser().absolute())
    if source.lower().endswith(".pptx"):
        from clip_multimodal.documents._pptx import extract_pptx

        return extract_pptx(source, options)
    if source.lower().endswith(".pdf"):
        from clip_multimodal.documents._pdf import extract_pdf

        return extract_pdf(source, options)
    raise DocumentLoadError(source, f"not a document; expected one of {DOCUMENT_EXTENSIONS}")


def read_document_image(uri: str) -> bytes:
    """The encoded bytes of the one image a document image URI addresses.

    Raises:
        DocumentLoadError: not such a URI, the document cannot be read, or it has no such
            page or image.
    """
    found = document_fragment(uri)
    if found is None:
        raise DocumentLoadError(uri, "not a document image URI (path.pdf#page=N[&image=K])")
    path, page, index, px = found
    if path.lower().endswith(".pptx"):
        from clip_multimodal.documents._pptx import read_pptx_image

        if index is None:
            raise DocumentLoadError(uri, "slides are not rendered; address an image (&image=K)")
        return read_pptx_image(path, page, index)
    from clip_multimodal.documents._pdf import read_pdf_image, render_pdf_page

    if index is None:
        return render_pdf_page(path, page, px or DocumentOptions().page_size)
    return read_pdf_image(path, page, index)
