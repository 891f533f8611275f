"""What documents yield: the options, the provenance of each image, and the URI that
addresses one image inside a document.

A document yields many images, page by page (never the whole document's images at once):
each embedded raster image, each page rendered, or both. Each image is addressed by a URI,
the document's absolute path with a fragment (`/docs/report.pdf#page=7&image=2` for the
third embedded image of page 7, `/docs/report.pdf#page=7` for the rendered page), which
`read_document_image` reads back: the index stores it, the server serves it.
"""

from __future__ import annotations

import hashlib
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, NamedTuple

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
    "is_document",
]

#: The file name endings read as documents (by folder sync and `ImageIndex.add`).
DOCUMENT_EXTENSIONS = (".pdf", ".pptx")
#: `DOCUMENT_EXTENSIONS` as glob patterns.
DOCUMENT_PATTERNS = tuple(f"*{ext}" for ext in DOCUMENT_EXTENSIONS)

Mode = Literal["images", "pages", "both"]
ImageKind = Literal["embedded", "page"]
BBox = tuple[float, float, float, float]

#: The metadata keys a document's image records carry (besides the image's own).
PROVENANCE_KEYS = frozenset(
    {"source", "page", "source_kind", "image_index", "title", "bbox_x0", "bbox_y0", "bbox_x1"}
    | {"bbox_y1", "doc_size", "doc_mtime_ns", "doc_sha256"}
)
_FRAGMENT = re.compile(
    r"^(?P<path>.+)#page=(?P<page>[1-9][0-9]{0,6})"
    r"(?:&image=(?P<image>[0-9]{1,6})|&px=(?P<px>[1-9][0-9]{1,4}))?$"
)


@dataclass(frozen=True)
class DocumentOptions:
    """How documents become images.

    Attributes:
        mode: "images" (each embedded raster image), "pages" (each page rendered, which
            covers vector charts and scanned pages; PDF only) or "both".
        min_size: embedded images narrower or lower than this many pixels are skipped
            (icons, rules, spacers).
        dedupe: an embedded image repeated in a document (a logo on every page) is kept
            once, on its first page (by content hash).
        page_size: the longer side of a rendered page, in pixels.
    """

    mode: Mode = "images"
    min_size: int = 32
    dedupe: bool = True
    page_size: int = 1024

    def __post_init__(self) -> None:
        if self.mode not in ("images", "pages", "both"):
            raise ValueError(f"mode must be 'images', 'pages' or 'both', not {self.mode!r}")
        if self.min_size < 0 or self.page_size < 16:
            raise ValueError("min_size must be >= 0 and page_size >= 16 pixels")

    @property
    def embedded(self) -> bool:
        return self.mode in ("images", "both")

    @property
    def pages(self) -> bool:
        return self.mode in ("pages", "both")


@dataclass(frozen=True)
class Provenance:
    """Where an image came from inside a document.

    Attributes:
        source: the document's absolute path.
        page: the page (slide) number, 1-based.
        kind: "embedded" (an image inside the page) or "page" (the page rendered).
        index: the embedded image's index on its page (0 for a rendered page).
        width: the image's width in pixels.
        height: its height in pixels.
        bbox: where the image sits on the page, (x0, y0, x1, y1) in points from the page's
            bottom-left corner, where the document says so; None otherwise.
        title: the document's title, if it has one.
    """

    source: str
    page: int
    kind: ImageKind
    index: int
    width: int
    height: int
    bbox: BBox | None = None
    title: str | None = None

    @property
    def uri(self) -> str:
        """The URI that addresses this image (`read_document_image` reads it back): a
        rendered page names its longer side, so it renders again at the same size."""
        if self.kind == "page":
            return f"{self.source}#page={self.page}&px={max(self.width, self.height)}"
        return f"{self.source}#page={self.page}&image={self.index}"

    @property
    def label(self) -> str:
        """How a citation names it: "report.pdf, page 7"."""
        return f"{Path(self.source).name}, page {self.page}"

    def metadata(self) -> dict[str, str | int | float | bool]:
        """The record metadata keys (Chroma takes scalars: the box is four keys)."""
        meta: dict[str, str | int | float | bool] = {
            "source": self.source,
            "page": self.page,
            "source_kind": self.kind,
            "image_index": self.index,
        }
        if self.title:
            meta["title"] = self.title
        if self.bbox is not None:
            for key, value in zip(
                ("bbox_x0", "bbox_y0", "bbox_x1", "bbox_y1"), self.bbox, strict=True
            ):
                meta[key] = round(float(value), 2)
        return meta

    @classmethod
    def from_metadata(cls, meta: Mapping[str, Any]) -> Provenance | None:
        """The provenance a record's metadata holds; None for a record of a plain image."""
        source, page, kind = meta.get("source"), meta.get("page"), meta.get("source_kind")
        if not (isinstance(source, str) and isinstance(page, int) and kind in ("embedded", "page")):
            return None
        box = [meta.get(k) for k in ("bbox_x0", "bbox_y0", "bbox_x1", "bbox_y1")]
        bbox: BBox | None = None
        if all(isinstance(v, (int, float)) for v in box):
            x0, y0, x1, y1 = (float(v) for v in box)  # type: ignore[arg-type]  # checked above
            bbox = (x0, y0, x1, y1)
        title = meta.get("title")
        return cls(
            source,
            page,
            "page" if kind == "page" else "embedded",
            int(meta.get("image_index") or 0),
            int(meta.get("width") or 0),
            int(meta.get("height") or 0),
            bbox,
            title if isinstance(title, str) else None,
        )


@dataclass(frozen=True)
class DocumentImage:
    """One image a document yielded: its encoded bytes (PNG or JPEG) and where it came from."""

    data: bytes
    provenance: Provenance

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.data).hexdigest()


@dataclass(frozen=True)
class ExtractFailure:
    """One image (or page) of a document that could not be read; the others still are."""

    source: str  # "report.pdf page 3 image 1"
    reason: str


Extracted = DocumentImage | ExtractFailure


def is_document(path: str | os.PathLike[str]) -> bool:
    """True for a path whose name ends with a document extension (case-insensitive)."""
    return os.fspath(path).lower().endswith(DOCUMENT_EXTENSIONS)


class DocumentRef(NamedTuple):
    """What a document image URI addresses."""

    path: str
    page: int
    image: int | None  # None: the rendered page
    px: int | None = None  # a rendered page's longer side (None: the default)


def document_fragment(text: str) -> DocumentRef | None:
    """The parts of a document image URI (`path.pdf#page=N&image=K` or `#page=N[&px=S]`)."""
    match = _FRAGMENT.match(text)
    if match is None or not is_document(match["path"]):
        return None
    image, px = match["image"], match["px"]
    return DocumentRef(
        match["path"],
        int(match["page"]),
        int(image) if image is not None else None,
        int(px) if px is not None else None,
    )


def describe(source: str, page: int, index: int | None = None) -> str:
    """How a failure names one page or image: "report.pdf page 3 image 1"."""
    name = f"{source} page {page}"
    return name if index is None else f"{name} image {index}"
