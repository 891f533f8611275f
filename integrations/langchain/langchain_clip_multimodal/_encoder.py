"""Any LangChain `Embeddings` as the core `Encoder`, so an `ImageIndex` can hold its texts.

`CLIPChroma` accepts any embedding function for texts (LangChain's conformance suite uses a
fake one). The index needs an `Encoder` to record the model and check dimensions; this
adapter gives it one. Images need a CLIP model, so the adapter refuses them.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Sequence
from typing import Any

import numpy as np
from langchain_core.embeddings import Embeddings
from pydantic import BaseModel

from clip_multimodal.types import Encoder, ImageEmbeddings, ImageInput
from langchain_clip_multimodal.embeddings import CLIPEmbeddings

__all__ = ["EmbeddingsEncoder", "encoder_for"]

_SECRET = re.compile(r"key|token|secret|password|credential", re.IGNORECASE)
_MAX_PARAM_CHARS = 80


class EmbeddingsEncoder:
    """The `Encoder` protocol over a LangChain `Embeddings` (texts only).

    `model_id` is the class name and its plain configuration (never secrets), so an index
    refuses vectors from another model; `dim` comes from embedding one probe text.
    """

    def __init__(self, embeddings: Embeddings) -> None:
        self.embeddings = embeddings
        self._dim: int | None = None
        self._lock = threading.Lock()

    @property
    def model_id(self) -> str:
        return f"langchain:{type(self.embeddings).__name__}({_plain_params(self.embeddings)})"

    @property
    def dim(self) -> int:
        with self._lock:
            if self._dim is None:
                self._dim = len(self.embeddings.embed_query("dimension probe"))
            return self._dim

    def embed_texts(self, texts: Sequence[str]) -> np.ndarray:
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        vectors = np.asarray(self.embeddings.embed_documents(list(texts)), dtype=np.float32)
        norms = np.linalg.norm(vectors, axis=1, keepdims=True)
        return np.asarray(vectors / np.maximum(norms, 1e-12), dtype=np.float32)

    def embed_images(self, images: Sequence[ImageInput]) -> np.ndarray:
        raise TypeError(self._no_images())

    def try_embed_images(self, images: Sequence[ImageInput]) -> ImageEmbeddings:
        raise TypeError(self._no_images())

    def _no_images(self) -> str:
        return (
            f"{type(self.embeddings).__name__} cannot embed images; pass "
            "embedding_function=CLIPEmbeddings(...) to store or search images"
        )


def encoder_for(embeddings: Embeddings) -> Encoder:
    """The core encoder behind an embedding function: CLIP's own, or the text-only adapter."""
    if isinstance(embeddings, CLIPEmbeddings):
        return embeddings.client
    return EmbeddingsEncoder(embeddings)


def _plain_params(embeddings: Embeddings) -> str:
    """`name=value` for the short scalar settings of a pydantic model, sorted; no secrets."""
    if not isinstance(embeddings, BaseModel):
        return ""
    try:
        fields: dict[str, Any] = embeddings.model_dump()
    except Exception:  # an exotic field must not stop the store from opening
        return ""
    plain = [
        f"{name}={value!r}"
        for name, value in sorted(fields.items())
        if isinstance(value, (str, int, float, bool))
        and not _SECRET.search(name)
        and len(repr(value)) <= _MAX_PARAM_CHARS
    ]
    return ", ".join(plain)
