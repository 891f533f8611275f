"""ImagePathReader: image files as ImageDocuments that reference their path (no bytes copied)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from llama_index.core.readers.base import BaseReader
from llama_index.core.schema import Document, ImageDocument

__all__ = ["IMAGE_EXTENSIONS", "ImagePathReader", "image_file_extractor"]

#: The extensions `image_file_extractor` maps to ImagePathReader.
IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".webp", ".gif", ".bmp", ".tif", ".tiff")


class ImagePathReader(BaseReader):
    """Reads an image file as an `ImageDocument` with `image_path` set and no text.

    The image bytes stay on disk: the embedding model reads them when it embeds, and a vector
    store keeps only the path. Use it through `image_file_extractor()` with
    `SimpleDirectoryReader`, which then needs no `llama-index-readers-file`:

    Example:
        >>> from llama_index.core import SimpleDirectoryReader
        >>> docs = SimpleDirectoryReader(
        ...     "photos/", recursive=True, file_extractor=image_file_extractor()
        ... ).load_data()
    """

    def load_data(
        self, file: Path | str, extra_info: dict[str, Any] | None = None, **_: Any
    ) -> list[Document]:
        """One ImageDocument for `file`, carrying `extra_info` as its metadata."""
        path = str(Path(file))
        metadata = dict(extra_info or {})
        metadata.setdefault("file_path", path)
        return [ImageDocument(image_path=path, text="", metadata=metadata)]


def image_file_extractor() -> dict[str, BaseReader]:
    """A `file_extractor` for SimpleDirectoryReader mapping image extensions to ImagePathReader."""
    reader = ImagePathReader()
    return dict.fromkeys(IMAGE_EXTENSIONS, reader)
