"""PPTX decks: the pictures on each slide, through python-pptx (the `documents` extra).

Slides are not rendered (python-pptx has no renderer): `pages` mode yields one failure that
says so, `both` yields the pictures.
"""

from __future__ import annotations

import io
from collections.abc import Iterable, Iterator
from typing import Any

from PIL import Image

from clip_multimodal.documents._types import (
    BBox,
    DocumentImage,
    DocumentOptions,
    Extracted,
    ExtractFailure,
    Provenance,
    describe,
)
from clip_multimodal.errors import DocumentLoadError, require

__all__ = ["extract_pptx", "read_pptx_image"]

_EMU_PER_POINT = 12700


def extract_pptx(source: str, options: DocumentOptions) -> Iterator[Extracted]:
    """A deck's pictures, slide by slide (see `extract_images`)."""
    deck = _open(source)
    if not options.embedded:
        yield ExtractFailure(source, "PPTX slides cannot be rendered; use mode 'images' or 'both'")
        return
    title = _title(deck)
    seen: set[str] = set()
    for number, slide in enumerate(deck.slides, 1):
        for index, picture in enumerate(_pictures(slide.shapes)):
            try:
                data = bytes(picture.image.blob)
                with Image.open(io.BytesIO(data)) as probe:
                    width, height = probe.size
            except Exception as exc:
                yield ExtractFailure(describe(source, number, index), f"broken picture ({exc})")
                continue
            if min(width, height) < options.min_size:
                continue
            bbox = _bbox(picture, int(deck.slide_height or 0))
            prov = Provenance(source, number, "embedded", index, width, height, bbox, title)
            image = DocumentImage(data, prov)
            if options.dedupe:
                if image.sha256 in seen:
                    continue
                seen.add(image.sha256)
            yield image


def read_pptx_image(source: str, page: int, index: int) -> bytes:
    """The bytes of picture `index` (0-based) on slide `page`."""
    deck = _open(source)
    slides = list(deck.slides)
    if not 1 <= page <= len(slides):
        raise DocumentLoadError(source, f"no slide {page}: it has {len(slides)} slides")
    pictures = list(_pictures(slides[page - 1].shapes))
    if not 0 <= index < len(pictures):
        raise DocumentLoadError(describe(source, page, index), f"has {len(pictures)} pictures")
    return bytes(pictures[index].image.blob)


def _open(source: str) -> Any:
    pptx: Any = require("pptx", "documents", "Reading PPTX decks")
    try:
        return pptx.Presentation(source)
    except Exception as exc:  # a foreign or truncated zip, a missing part
        raise DocumentLoadError(source, f"not a readable PPTX deck ({type(exc).__name__})") from exc


def _title(deck: Any) -> str | None:
    title = deck.core_properties.title
    return str(title).strip() or None if title else None


def _pictures(shapes: Iterable[Any]) -> Iterator[Any]:
    """Pictures in z-order, groups opened."""
    from pptx.shapes.group import GroupShape
    from pptx.shapes.picture import Picture

    for shape in shapes:
        if isinstance(shape, GroupShape):
            yield from _pictures(shape.shapes)
        elif isinstance(shape, Picture):
            yield shape


def _bbox(picture: Any, slide_height: int) -> BBox | None:
    """The picture's box in points from the slide's bottom-left (as a PDF's boxes)."""
    left, top, width, height = picture.left, picture.top, picture.width, picture.height
    if None in (left, top, width, height) or not slide_height:
        return None
    x0, x1 = left / _EMU_PER_POINT, (left + width) / _EMU_PER_POINT
    y1 = (slide_height - top) / _EMU_PER_POINT
    return (x0, y1 - height / _EMU_PER_POINT, x1, y1)
