"""LlamaIndex embeddings on clip-multimodal: any open_clip model, batched and normalized."""

from llama_index.embeddings.clip_multimodal.base import (
    CLIPMultiModalEmbedding,
    image_node_to_input,
    to_image_input,
)

__all__ = ["CLIPMultiModalEmbedding", "image_node_to_input", "to_image_input"]
