"""LlamaIndex readers for clip-multimodal: image files as path-referencing ImageDocuments."""

from llama_index.readers.clip_multimodal.base import (
    IMAGE_EXTENSIONS,
    ImagePathReader,
    image_file_extractor,
)

__all__ = ["IMAGE_EXTENSIONS", "ImagePathReader", "image_file_extractor"]
