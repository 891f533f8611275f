"""PDF documents: embedded raster images through pypdf, pages rendered through pypdfium2.

Both libraries are the `documents` extra, imported when a PDF is first read. Pages are
visited one at a time and each image is handed on as soon as it is read, so a long document
never holds more than one page's images.
"""

from __future__ import annotations

import io
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

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

if TYPE_CHECKING:
    from pypdf import PageObject, PdfReader

__all__ = ["extract_pdf", "read_pdf_image", "render_pdf_page"]

Matrix = tuple[float, float, float, float, float, float]
_IDENTITY: Matrix = (1.0, 0.0, 0.0, 1.0, 0.0, 0.0)
#: The most pixels an embedded image may declare (the image loader's default cap, PIL's).
_MAX_PIXELS = 89_478_485


def extract_pdf(source: str, options: DocumentOptions) -> Iterator[Extracted]:
    """A PDF's images, page by page (see `extract_images`)."""
    reader = _open_reader(source)
    pages = _page_count(reader, source)
    title = _title(reader)
    renderer, failure = _open_renderer(source) if options.pages else (None, None)
    if failure is not None:
        yield failure
    seen: set[str] = set()
    try:
        for number in range(1, pages + 1):
            if options.embedded:
                yield from _embedded(reader, source, number, title, options, seen)
                _forget_images(reader, number)
            if renderer is not None:
                yield _rendered(renderer, source, number, title, options.page_size)
    finally:
        if renderer is not None:
            renderer.close()


def read_pdf_image(source: str, page: int, index: int) -> bytes:
    """The encoded bytes of embedded image `index` (0-based, as extracted) on `page`."""
    reader = _open_reader(source)
    pdf_page = _page(reader, source, page)
    keys = pdf_page.images.keys()
    if not 0 <= index < len(keys):
        raise DocumentLoadError(describe(source, page, index), f"the page has {len(keys)} images")
    try:
        return bytes(pdf_page.images[keys[index]].data)
    except Exception as exc:  # pypdf raises many types on a damaged stream
        raise DocumentLoadError(describe(source, page, index), _broken(exc)) from exc


def render_pdf_page(source: str, page: int, page_size: int) -> bytes:
    """One page rendered to PNG, its longer side `page_size` pixels."""
    renderer, failure = _open_renderer(source)
    if renderer is None:
        assert failure is not None
        raise DocumentLoadError(source, failure.reason)
    try:
        if not 1 <= page <= len(renderer):
            raise DocumentLoadError(source, f"no page {page}: it has {len(renderer)} pages")
        return _render(renderer, page, page_size)[0]
    finally:
        renderer.close()


def _open_reader(source: str) -> PdfReader:
    pypdf: Any = require("pypdf", "documents", "Reading PDF documents")
    try:
        reader: PdfReader = pypdf.PdfReader(source, strict=False)
    except OSError as exc:
        raise DocumentLoadError(source, f"cannot open the file ({exc.strerror or exc})") from exc
    except Exception as exc:  # PdfReadError, and worse on a truncated or foreign file
        raise DocumentLoadError(source, f"not a readable PDF ({_reason(exc)})") from exc
    if reader.is_encrypted:
        _decrypt(reader, source)
    return reader


def _decrypt(reader: PdfReader, source: str) -> None:
    """Open a PDF that only restricts printing or copying (an empty user password)."""
    try:
        opened = reader.decrypt("")
    except Exception as exc:  # a missing crypto library, an unknown algorithm
        raise DocumentLoadError(
            source, f"encrypted, and cannot be opened ({_reason(exc)})"
        ) from exc
    if not opened:
        raise DocumentLoadError(source, "encrypted with a password; decrypt it first (qpdf)")


def _page_count(reader: PdfReader, source: str) -> int:
    try:
        return len(reader.pages)
    except Exception as exc:
        raise DocumentLoadError(source, f"its page tree is damaged ({_reason(exc)})") from exc


def _page(reader: PdfReader, source: str, number: int) -> PageObject:
    pages = _page_count(reader, source)
    if not 1 <= number <= pages:
        raise DocumentLoadError(source, f"no page {number}: it has {pages} pages")
    try:
        return reader.pages[number - 1]
    except Exception as exc:
        raise DocumentLoadError(describe(source, number), _reason(exc)) from exc


def _title(reader: PdfReader) -> str | None:
    try:
        info = reader.metadata
        title = info.title if info is not None else None
    except Exception:  # a damaged info dictionary costs the title, nothing else
        return None
    return str(title).strip() or None if title else None


def _embedded(
    reader: PdfReader,
    source: str,
    number: int,
    title: str | None,
    options: DocumentOptions,
    seen: set[str],
) -> Iterator[Extracted]:
    """One page's embedded images, each decoded once; a broken one becomes a failure."""
    try:
        page = reader.pages[number - 1]
        images = page.images
        keys = images.keys()
    except Exception as exc:
        yield ExtractFailure(describe(source, number), f"cannot list its images ({_reason(exc)})")
        return
    boxes: dict[str, BBox] | None = None
    for index, key in enumerate(keys):
        pixels = _declared_pixels(page, key)
        if pixels > _MAX_PIXELS:  # refused before pypdf decodes it
            reason = f"{pixels} pixels, over the {_MAX_PIXELS} limit (a decompression bomb?)"
            yield ExtractFailure(describe(source, number, index), reason)
            continue
        try:
            found = images[key]
            width, height = found.image.size if found.image is not None else (0, 0)
            data = bytes(found.data)
        except Exception as exc:
            yield ExtractFailure(describe(source, number, index), _broken(exc))
            continue
        if min(width, height) < options.min_size or not data:
            continue  # icons, rules and spacers carry nothing to search for
        image = DocumentImage(data, Provenance(source, number, "embedded", index, width, height))
        if options.dedupe:
            if image.sha256 in seen:
                continue  # a logo on every page: kept once, on its first page
            seen.add(image.sha256)
        if boxes is None:
            boxes = _placements(page)
        bbox = boxes.get(key) if isinstance(key, str) else None
        yield _with(image, bbox, title)


def _forget_images(reader: PdfReader, number: int) -> None:
    """Drop a page's image streams from pypdf's object cache once they are handed on: it
    keeps every object it resolves, so a long document would hold all its images."""
    try:
        xobjects: Any = reader.pages[number - 1]["/Resources"]["/XObject"]  # type: ignore[index]
        refs = [xobjects.raw_get(name) for name in xobjects]
    except Exception:  # no resources, or damaged ones: nothing cached to drop
        return
    for ref in refs:
        key = (getattr(ref, "generation", None), getattr(ref, "idnum", None))
        reader.resolved_objects.pop(key, None)


def _declared_pixels(page: PageObject, key: object) -> int:
    """Width x height as the image's dictionary declares them (0 where it cannot say)."""
    try:
        xobject = page["/Resources"]["/XObject"][key].get_object()  # type: ignore[index]
        return int(xobject["/Width"]) * int(xobject["/Height"])
    except Exception:  # inline images, forms, damaged dictionaries: pypdf decides
        return 0


def _with(image: DocumentImage, bbox: BBox | None, title: str | None) -> DocumentImage:
    p = image.provenance
    return DocumentImage(
        image.data, Provenance(p.source, p.page, p.kind, p.index, p.width, p.height, bbox, title)
    )


def _placements(page: PageObject) -> dict[str, BBox]:
    """Where each top-level image XObject is first drawn: the unit square through the CTM."""
    try:
        contents = page.get_contents()
        operations = contents.operations if contents is not None else []
    except Exception:  # no box is better than no image
        return {}
    boxes: dict[str, BBox] = {}
    ctm, stack = _IDENTITY, []
    for operands, operator in operations:
        if operator == b"q":
            stack.append(ctm)
        elif operator == b"Q":
            ctm = stack.pop() if stack else _IDENTITY
        elif operator == b"cm" and len(operands) == 6:
            ctm = _concat(tuple(float(v) for v in operands), ctm)  # type: ignore[arg-type]
        elif operator == b"Do" and operands:
            boxes.setdefault(str(operands[0]), _unit_box(ctm))
    return boxes


def _concat(m: Matrix, ctm: Matrix) -> Matrix:
    a, b, c, d, e, f = m
    A, B, C, D, E, F = ctm  # the PDF spec's names
    return (
        a * A + b * C,
        a * B + b * D,
        c * A + d * C,
        c * B + d * D,
        e * A + f * C + E,
        e * B + f * D + F,
    )


def _unit_box(m: Matrix) -> BBox:
    a, b, c, d, e, f = m
    xs = [e, a + e, c + e, a + c + e]
    ys = [f, b + f, d + f, b + d + f]
    return (min(xs), min(ys), max(xs), max(ys))


def _open_renderer(source: str) -> tuple[Any, ExtractFailure | None]:
    pdfium: Any = require("pypdfium2", "documents", "Rendering PDF pages")
    try:
        return pdfium.PdfDocument(source), None
    except Exception as exc:  # PdfiumError: a password, a damaged file
        return None, ExtractFailure(source, f"cannot render its pages ({_reason(exc)})")


def _rendered(
    renderer: Any, source: str, number: int, title: str | None, page_size: int
) -> Extracted:
    if number > len(renderer):
        return ExtractFailure(describe(source, number), "the renderer found no such page")
    try:
        data, (width, height) = _render(renderer, number, page_size)
    except Exception as exc:
        return ExtractFailure(describe(source, number), f"cannot render ({_reason(exc)})")
    return DocumentImage(data, Provenance(source, number, "page", 0, width, height, None, title))


def _render(renderer: Any, number: int, page_size: int) -> tuple[bytes, tuple[int, int]]:
    page = renderer[number - 1]
    try:
        width, height = page.get_size()
        image: Image.Image = page.render(scale=page_size / max(width, height, 1.0)).to_pil()
    finally:
        page.close()
    out = io.BytesIO()
    image.convert("RGB").save(out, "PNG", compress_level=1)  # level 1: 4x faster, same pixels
    return out.getvalue(), image.size


def _broken(exc: Exception) -> str:
    return f"broken image stream ({_reason(exc)})"


def _reason(exc: Exception) -> str:
    text = str(exc).strip().splitlines()[0][:200] if str(exc).strip() else ""
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__
