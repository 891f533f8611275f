"""Small PDFs and PPTX decks for the document tests, generated with reportlab and python-pptx."""

from __future__ import annotations

import io
import re
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image

#: One page: its text, and the images drawn on it with their (x, y, width, height) in points.
Page = tuple[str, Sequence[tuple[Image.Image, tuple[float, float, float, float]]]]


def noise(seed: int, size: int = 64) -> Image.Image:
    """A distinct image per seed (random pixels survive any re-encoding as a distinct hash)."""
    pixels = np.random.default_rng(seed).integers(0, 256, (size, size, 3), dtype=np.uint8)
    return Image.fromarray(pixels)


def make_pdf(
    path: Path,
    pages: Sequence[Page],
    *,
    title: str | None = None,
    user_password: str | None = None,
) -> Path:
    """A PDF of `pages` (A4-ish 400x400 pt pages keep the files small)."""
    from reportlab.lib.utils import ImageReader
    from reportlab.pdfgen import canvas

    encrypt = None
    if user_password is not None:
        from reportlab.lib.pdfencrypt import StandardEncryption

        encrypt = StandardEncryption(user_password, "owner")
    path.parent.mkdir(parents=True, exist_ok=True)
    pdf = canvas.Canvas(str(path), pagesize=(400, 400), encrypt=encrypt, invariant=1)
    if title:
        pdf.setTitle(title)
    for text, images in pages:
        if text:
            pdf.drawString(20, 370, text)
        for image, (x, y, w, h) in images:
            pdf.drawImage(ImageReader(image), x, y, w, h)
        pdf.showPage()
    pdf.save()
    return path


def break_image_streams(path: Path) -> Path:
    """Overwrite each image XObject's stream with garbage of the same length (offsets kept)."""
    data = bytearray(path.read_bytes())
    for match in re.finditer(rb"/Subtype /Image.*?stream\r?\n(.*?)endstream", data, re.S):
        start, end = match.span(1)
        data[start + 4 : end - 4] = b"\xff" * (end - start - 8)
    path.write_bytes(bytes(data))
    return path


def make_pptx(
    path: Path, slides: Sequence[Sequence[Image.Image]], title: str | None = None
) -> Path:
    """A deck with one slide per entry, its pictures side by side."""
    from pptx import Presentation
    from pptx.util import Inches

    deck = Presentation()
    if title:
        deck.core_properties.title = title
    for pictures in slides:
        slide = deck.slides.add_slide(deck.slide_layouts[6])  # blank
        for i, image in enumerate(pictures):
            out = io.BytesIO()
            image.save(out, "PNG")
            out.seek(0)
            slide.shapes.add_picture(out, Inches(1 + 2.5 * i), Inches(1), Inches(2), Inches(2))
    path.parent.mkdir(parents=True, exist_ok=True)
    deck.save(str(path))
    return path
