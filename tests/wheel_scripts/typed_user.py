"""A user's script that mypy --strict must accept against the installed wheels (py.typed)."""

from __future__ import annotations

from langchain_clip_multimodal import CLIPEmbeddings
from llama_index.embeddings.clip_multimodal import CLIPMultiModalEmbedding
from llama_index.retrievers.clip_multimodal import CLIPImageRetriever

from clip_multimodal import CLIPEncoder


def model_id(encoder: CLIPEncoder) -> str:
    return encoder.model_id


def langchain_vector(text: str) -> list[float]:
    return CLIPEmbeddings(model_name="clip-multimodal-demo").embed_query(text)


def llama_index_vector(text: str) -> list[float]:
    return CLIPMultiModalEmbedding(model_name="clip-multimodal-demo").get_text_embedding(text)


def retriever_type() -> type[CLIPImageRetriever]:
    return CLIPImageRetriever
