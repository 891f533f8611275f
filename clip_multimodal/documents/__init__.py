"""Documents (PDF, PPTX) as image sources: each embedded image or rendered page, with where
it came from.

`extract_images` streams a document's images page by page, with a failure in place of each
one it cannot read; `read_document_image` reads one back from its URI
(`/docs/report.pdf#page=7&image=2`, or `#page=7` for the rendered page). pypdf,
pypdfium2 and python-pptx are the `documents` extra, imported when a document is read.
"""

from clip_multimodal.documents._extract import extract_images, read_document_image
from clip_multimodal.documents._types import (
    DOCUMENT_EXTENSIONS,
    DOCUMENT_PATTERNS,
    PROVENANCE_KEYS,
    DocumentImage,
    DocumentOptions,
    DocumentRef,
    ExtractFailure,
    Provenance,
    document_fragment,
    is_document,
)

__all__ = [
    "DOCUMENT_EXTENSIONS",
    "DOCUMENT_PATTERNS",
    "PROVENANCE_KEYS",
    "DocumentImage",
    "DocumentOptions",
    "DocumentRef",
    "ExtractFailure",
    "Provenance",
    "document_fragment",
    "extract_images",
    "is_document",
    "read_document_image",
]
