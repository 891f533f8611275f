"""Readers: image files as ImageDocuments that reference their path (no bytes copied), with
content-hash ids, so that indexing the same files again adds nothing twice."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from llama_index.core.readers.base import BaseReader
from llama_index.core.schema import BaseNode, Document, ImageDocument

from clip_multimodal.images import IMAGE_EXTENSIONS, sha256_file

__all__ = [
    "IMAGE_EXTENSIONS",
    "TEXT_EXTENSIONS",
    "FolderReader",
    "ImagePathReader",
    "content_node_id",
    "image_file_extractor",
]

#: The extensions `FolderReader` reads as text notes by default.
TEXT_EXTENSIONS = (".txt", ".md")

#: Metadata CLIP should not embed with a note: its 77 tokens are for the text.
_FILE_KEYS = ["file_path", "file_name"]


class ImagePathReader(BaseReader):
    """Reads an image file as an `ImageDocument` with `image_path` set and no text.

    The image bytes stay on disk: the embedding model reads them when it embeds, and a vector
    store keeps only the path. The document's id is the SHA-256 of the file's bytes, the id
    clip-multimodal's `ImageIndex.add` gives the same image, so reading a file again gives the
    same id. Use it through `image_file_extractor()` with `SimpleDirectoryReader`, or read a
    whole folder with `FolderReader`.

    Example:
        >>> from llama_index.core import SimpleDirectoryReader
        >>> docs = SimpleDirectoryReader(
        ...     "photos/", recursive=True, file_extractor=image_file_extractor()
        ... ).load_data()
    """

    def load_data(
        self, file: Path | str, extra_info: dict[str, Any] | None = None, **_: Any
    ) -> list[Document]:
        """One ImageDocument for `file`, carrying `extra_info` as its metadata.

        Raises:
            ImageLoadError: the file cannot be read.
        """
        path = str(Path(file))
        metadata = dict(extra_info or {})
        metadata.setdefault("file_path", path)
        return [ImageDocument(id_=sha256_file(path), image_path=path, text="", metadata=metadata)]


def image_file_extractor() -> dict[str, BaseReader]:
    """A `file_extractor` for SimpleDirectoryReader mapping image extensions to ImagePathReader."""
    reader = ImagePathReader()
    return dict.fromkeys(IMAGE_EXTENSIONS, reader)


class FolderReader(BaseReader):
    """Reads a folder's images (as path-referencing `ImageDocument`s) and text notes.

    Made for multimodal indexes over a folder, where `SimpleDirectoryReader` falls short: it
    finds nothing in a folder under a hidden directory (such as `.data/demo-images`), and
    without `llama-index-readers-file` it logs a warning for every file. This reader:

    - skips hidden files and folders inside the folder, never because of the folder's own path;
    - gives every document the SHA-256 of its file as id (for images, the id clip-multimodal's
      `ImageIndex.add` uses), and reads identical files once, so ids are unique: with
      `content_node_id` as the node parser's `id_func`, re-indexing the folder into the same
      vector store adds nothing twice;
    - keeps `file_path` and `file_name` out of a note's embedding (CLIP reads 77 tokens).

    Example:
        >>> from llama_index.core.node_parser import SentenceSplitter
        >>> documents = FolderReader().load_data("./library")
        >>> index = MultiModalVectorStoreIndex.from_documents(
        ...     documents, storage_context=storage, embed_model=embed, image_embed_model=embed,
        ...     transformations=[SentenceSplitter(id_func=content_node_id)],
        ... )

    Args:
        recursive: also read the folder's subfolders.
        text_extensions: the extensions read as UTF-8 text notes; other files are skipped.
    """

    def __init__(
        self, recursive: bool = True, text_extensions: tuple[str, ...] = TEXT_EXTENSIONS
    ) -> None:
        self.recursive = recursive
        self.text_extensions = tuple(e.lower() for e in text_extensions)

    def load_data(self, folder: Path | str, **_: Any) -> list[Document]:
        """The folder's images and notes, in path order, one document per distinct content.

        Raises:
            ValueError: `folder` is not a folder, or holds no image or note.
        """
        root = Path(folder)
        if not root.is_dir():
            raise ValueError(f"{folder} is not a folder")
        documents: dict[str, Document] = {}
        for path in self._files(root):
            document = self._read(path)
            documents.setdefault(document.id_, document)  # identical files: the first path
        if not documents:
            kinds = ", ".join(IMAGE_EXTENSIONS + self.text_extensions)
            raise ValueError(f"no image or text files found under {folder} (looked for {kinds})")
        return list(documents.values())

    def _files(self, root: Path) -> list[Path]:
        found = root.rglob("*") if self.recursive else root.glob("*")
        wanted = IMAGE_EXTENSIONS + self.text_extensions
        return sorted(
            p
            for p in found
            if p.suffix.lower() in wanted
            and not any(part.startswith(".") for part in p.relative_to(root).parts)
            and p.is_file()
        )

    def _read(self, path: Path) -> Document:
        metadata = {"file_path": str(path), "file_name": path.name}
        if path.suffix.lower() in IMAGE_EXTENSIONS:
            return ImagePathReader().load_data(path, metadata)[0]
        return Document(
            id_=sha256_file(path),
            text=path.read_text(encoding="utf-8", errors="replace"),
            metadata=metadata,
            excluded_embed_metadata_keys=list(_FILE_KEYS),
        )


def content_node_id(i: int, doc: BaseNode) -> str:
    """A node parser `id_func` that derives node ids from the document's id.

    The first node of a document takes the document's id, the next ones `<id>-<i>`. With the
    content-hash ids of `FolderReader` and `ImagePathReader`, the same file always gives the
    same node ids (the default `id_func` draws random ones), so indexing it again into the
    same vector store adds no duplicate.
    """
    return doc.id_ if i == 0 else f"{doc.id_}-{i}"
