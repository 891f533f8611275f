"""LlamaIndex image retrieval on clip-multimodal: text-to-image and image-to-image, filterable."""

from llama_index.retrievers.clip_multimodal.base import CLIPImageRetriever
from llama_index.retrievers.clip_multimodal.filters import to_chroma_where

__all__ = ["CLIPImageRetriever", "to_chroma_where"]
