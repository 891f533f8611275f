"""LlamaIndex image retrieval on clip-multimodal: text-to-image and image-to-image, filterable,
and fused with any text retriever."""

from llama_index.retrievers.clip_multimodal.base import CLIPImageRetriever
from llama_index.retrievers.clip_multimodal.filters import to_chroma_where
from llama_index.retrievers.clip_multimodal.fusion import TextImageFusionRetriever

__all__ = ["CLIPImageRetriever", "TextImageFusionRetriever", "to_chroma_where"]
