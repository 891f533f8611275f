"""LangChain integration for clip-multimodal: CLIP embeddings, an image vector store over
Chroma, an image retriever, vision-message helpers and an agent tool."""

from langchain_clip_multimodal.embeddings import CLIPEmbeddings
from langchain_clip_multimodal.messages import documents_to_image_blocks, image_message
from langchain_clip_multimodal.retrievers import CLIPImageRetriever, TextImageRetriever
from langchain_clip_multimodal.tools import create_image_search_tool
from langchain_clip_multimodal.vectorstores import CLIPChroma, cosine_relevance

__version__ = "0.1.0"

__all__ = [
    "CLIPChroma",
    "CLIPEmbeddings",
    "CLIPImageRetriever",
    "TextImageRetriever",
    "__version__",
    "cosine_relevance",
    "create_image_search_tool",
    "documents_to_image_blocks",
    "image_message",
]
