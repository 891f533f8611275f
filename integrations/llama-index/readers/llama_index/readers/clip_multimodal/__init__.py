"""LlamaIndex readers for clip-multimodal: image files as path-referencing ImageDocuments."""

from llama_index.readers.clip_multimodal.base import (
    IMAGE_EXTENSIONS,
    TEXT_EXTENSIONS,
    FolderReader,
    ImagePathReader,
    content_node_id,
    image_file_extractor,
)

__all__ = [
    "IMAGE_EXTENSIONS",
    "TEXT_EXTENSIONS",
    "FolderReader",
    "ImagePathReader",
    "content_node_id",
    "image_file_extractor",
]
