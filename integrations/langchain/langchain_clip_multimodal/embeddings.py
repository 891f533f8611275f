"""CLIPEmbeddings: LangChain `Embeddings` over the clip-multimodal encoder, texts and images."""

from __future__ import annotations

import asyncio
import threading
from typing import Any

import numpy as np
from langchain_core.embeddings import Embeddings
from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, model_validator

from clip_multimodal.models import DEFAULT_MODEL, DEFAULT_PRETRAINED, ModelSpec, Precision
from clip_multimodal.types import Encoder

__all__ = ["CLIPEmbeddings"]

# One lock for all instances (loads are rare) keeps the models copyable and picklable.
_LOAD_LOCK = threading.Lock()


class CLIPEmbeddings(BaseModel, Embeddings):
    """CLIP text and image embeddings, batched through `clip_multimodal.CLIPEncoder`.

    A drop-in for `langchain_experimental.open_clip.OpenCLIPEmbeddings`: `embed_image` is the
    method `langchain_chroma.Chroma.add_images` and `similarity_search_by_image` call. Every
    vector is L2-normalized and made of Python floats. The model loads on first use.

    Setup:
        ```bash
        pip install langchain-clip-multimodal
        ```

    Instantiate:
        ```python
        from langchain_clip_multimodal import CLIPEmbeddings

        embeddings = CLIPEmbeddings(model_name="ViT-B-32", pretrained="laion2b_s34b_b79k")
        # OpenCLIPEmbeddings' arguments work as they are; OpenAI's names load OpenAI's weights:
        embeddings = CLIPEmbeddings(model_name="ViT-H-14", checkpoint="laion2b_s32b_b79k")
        embeddings = CLIPEmbeddings(model_name="ViT-B/32")
        # or wrap an encoder you already have:
        embeddings = CLIPEmbeddings(encoder=CLIPEncoder("local-dir:/models/my-clip"))
        ```

    Usage:
        ```python
        embeddings.embed_query("a red circle")  # list[float]
        embeddings.embed_documents(["a cat", "a dog"])  # list[list[float]]
        embeddings.embed_image(["photos/cat.jpg"])  # list[list[float]]
        ```

    Async:
        ```python
        await embeddings.aembed_query("a red circle")  # runs in a worker thread
        await embeddings.aembed_image(["photos/cat.jpg"])
        ```

    Attributes:
        model_name: an open_clip architecture (`ViT-B-32`), an OpenAI name (`ViT-B/32`,
            OpenAI's weights), `hf-hub:org/repo`, `local-dir:PATH`, `transformers:org/repo`,
            `cn-clip:ARCH` or `clip-multimodal-demo`.
        pretrained: the pretrained tag or weights file for an architecture name (None for a
            model that names its weights). `checkpoint=`, as `OpenCLIPEmbeddings` names it,
            sets it too.
        device: `auto` (cuda, then mps, then cpu) or a torch device string.
        precision: `auto`, `fp32`, `fp16` or `bf16`.
        batch_size: items per forward pass (None: the encoder's default).
        encoder: an existing encoder to use instead of loading one from the fields above
            (any `clip_multimodal.Encoder`; not serialized).

    The model fields are a `clip_multimodal.ModelSpec` (`spec`), validated as it validates.
    """

    model_config = ConfigDict(
        extra="forbid",
        populate_by_name=True,
        protected_namespaces=(),
        arbitrary_types_allowed=True,
    )

    model_name: str = DEFAULT_MODEL
    pretrained: str | None = DEFAULT_PRETRAINED
    device: str = "auto"
    precision: Precision = "auto"
    batch_size: int | None = Field(default=None, ge=1)
    encoder: Encoder | None = Field(default=None, exclude=True, repr=False)

    _loaded: Encoder | None = PrivateAttr(default=None)

    @model_validator(mode="before")
    @classmethod
    def _checkpoint_is_pretrained(cls, data: Any) -> Any:
        """`checkpoint=`, OpenCLIPEmbeddings' name for the pretrained tag, is `pretrained=`."""
        if isinstance(data, dict) and "checkpoint" in data:
            data = dict(data)
            checkpoint = data.pop("checkpoint")
            if data.get("pretrained", checkpoint) != checkpoint:
                raise ValueError("checkpoint= and pretrained= name the same thing; give one")
            data["pretrained"] = checkpoint
        return data

    @model_validator(mode="after")
    def _check_spec(self) -> CLIPEmbeddings:
        # ModelSpec validates; a model that names its weights (the demo alias) reads no tag.
        self.pretrained = self.spec.pretrained
        return self

    @property
    def checkpoint(self) -> str | None:
        """The pretrained tag or weights file, by OpenCLIPEmbeddings' name."""
        return self.pretrained

    @property
    def spec(self) -> ModelSpec:
        """The model fields as a `ModelSpec`."""
        return ModelSpec(
            self.model_name, self.pretrained, self.device, self.precision, self.batch_size
        )

    @property
    def client(self) -> Encoder:
        """The encoder: the one passed in, else loaded from the model fields on first use."""
        if self.encoder is not None:
            return self.encoder
        with _LOAD_LOCK:  # two threads asking at once must not load the model twice
            if self._loaded is None:
                from clip_multimodal.encoder import CLIPEncoder

                self._loaded = CLIPEncoder.from_spec(self.spec)
            return self._loaded

    @property
    def model_id(self) -> str:
        """The encoder's model id (architecture and exact weights), as indexes record it."""
        return self.client.model_id

    def embed_documents(self, texts: list[str]) -> list[list[float]]:
        """Embed texts with the text tower, in batches."""
        return _as_lists(self.client.embed_texts(texts))

    def embed_query(self, text: str) -> list[float]:
        """Embed one text with the text tower."""
        return self.embed_documents([text])[0]

    def embed_image(self, uris: list[str]) -> list[list[float]]:
        """Embed images (paths, URLs or data: URIs) with the image tower, in batches.

        Raises:
            clip_multimodal.ImageLoadError: an image cannot be read; the message names it.
        """
        return _as_lists(self.client.embed_images(list(uris)))

    async def aembed_documents(self, texts: list[str]) -> list[list[float]]:
        """Like `embed_documents`, in a worker thread so the event loop stays free."""
        return await asyncio.to_thread(self.embed_documents, texts)

    async def aembed_query(self, text: str) -> list[float]:
        """Like `embed_query`, in a worker thread so the event loop stays free."""
        return await asyncio.to_thread(self.embed_query, text)

    async def aembed_image(self, uris: list[str]) -> list[list[float]]:
        """Like `embed_image`, in a worker thread so the event loop stays free."""
        return await asyncio.to_thread(self.embed_image, uris)


def _as_lists(vectors: np.ndarray) -> list[list[float]]:
    rows: list[list[float]] = np.asarray(vectors, dtype=np.float32).tolist()
    return rows
