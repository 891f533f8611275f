"""CLIPMultiModalEmbedding: clip-multimodal's CLIPEncoder behind LlamaIndex's MultiModalEmbedding."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote, urlparse

from llama_index.core.base.embeddings.base import Embedding
from llama_index.core.bridge.pydantic import Field, PrivateAttr
from llama_index.core.embeddings.multi_modal_base import MultiModalEmbedding
from llama_index.core.schema import ImageNode, ImageType

from clip_multimodal.errors import ImageLoadError
from clip_multimodal.images import decode_base64, read_bytes
from clip_multimodal.models import DEFAULT_MODEL, DEFAULT_PRETRAINED, ModelSpec, Precision

if TYPE_CHECKING:
    from clip_multimodal.types import Encoder, ImageInput

__all__ = ["CLIPMultiModalEmbedding", "image_node_to_input", "to_image_input"]

#: What the embedding's image methods accept: LlamaIndex's ImageType (a path or URL string, a
#: BytesIO), an ImageNode, or anything clip-multimodal loads (Path, bytes, PIL image, array).
ImageLike = Any


class CLIPMultiModalEmbedding(MultiModalEmbedding):
    """Text and image embeddings from any open_clip model, batched and L2-normalized.

    Configure it with a model spec, or hand it an encoder you already loaded:

    Setup:
        .. code-block:: bash

            pip install "llama-index-embeddings-clip-multimodal[chroma]"

    Instantiate:
        .. code-block:: python

            from llama_index.embeddings.clip_multimodal import CLIPMultiModalEmbedding

            embed = CLIPMultiModalEmbedding(
                model_name="ViT-B-32", pretrained="laion2b_s34b_b79k", device="auto"
            )
            # or: CLIPMultiModalEmbedding(encoder=CLIPEncoder("local-dir:/models/my-clip"))

    Usage:
        .. code-block:: python

            embed.get_text_embedding("a dog on a beach")        # list[float], unit length
            embed.get_image_embedding_batch(["a.jpg", "https://example.com/b.png"])

    Async:
        .. code-block:: python

            await embed.aget_image_embedding_batch(paths)  # runs in a worker thread

    Args:
        model_name: an open_clip architecture (`ViT-B-32`), `hf-hub:org/repo`,
            `local-dir:PATH`, `transformers:org/repo` (Hugging Face CLIP, SigLIP, Chinese-CLIP)
            or `cn-clip:ARCH`. Multilingual and fine-tuned open_clip models work alike.
        pretrained: the pretrained tag or a local weights file (architecture names only).
        device: `auto` (cuda, then mps, then cpu) or a torch device string.
        precision: `auto` (bf16/fp16 on a GPU, fp32 on the CPU), `fp32`, `fp16` or `bf16`.
        embed_batch_size: items per model call; LlamaIndex also chunks batches by it.
        encoder: an already loaded encoder (a `CLIPEncoder`, or any `Encoder` such as
            `FakeEncoder` in tests). Then leave out model_name, pretrained, device and precision.

    Raises:
        ModelNotAvailableError: the weights are not available locally (raised at once, offline).
        InvalidModelSpecError: a model field is invalid (the message names it).
        ValueError: both `encoder` and a model spec were given.
    """

    model_name: str = Field(default=DEFAULT_MODEL, description="The open_clip model spec.")
    pretrained: str | None = Field(
        default=DEFAULT_PRETRAINED, description="Pretrained tag or weights file."
    )
    device: str = Field(default="auto", description="auto, cpu, cuda, mps, ...")
    precision: Precision = Field(
        default="auto", description="Model precision; auto is fp32 on the CPU."
    )
    embed_batch_size: int = Field(default=32, gt=0, le=2048, description="Items per model call.")

    _encoder: Encoder = PrivateAttr()

    def __init__(self, *, encoder: Encoder | None = None, **data: Any) -> None:
        if encoder is not None:
            data = {**_describe(encoder, data), **data}
        super().__init__(**data)
        # ModelSpec validates; a model that names its weights (local-dir, hf-hub) reads no tag.
        self.pretrained = self.spec.pretrained
        if encoder is None:
            from clip_multimodal.encoder import CLIPEncoder

            encoder = CLIPEncoder.from_spec(self.spec)
        self._encoder = encoder

    @property
    def spec(self) -> ModelSpec:
        """The model fields as a `clip_multimodal.ModelSpec`."""
        return ModelSpec(
            self.model_name, self.pretrained, self.device, self.precision, self.embed_batch_size
        )

    @classmethod
    def class_name(cls) -> str:
        return "CLIPMultiModalEmbedding"

    @property
    def encoder(self) -> Encoder:
        """The underlying clip-multimodal encoder (shareable with an `ImageIndex`)."""
        return self._encoder

    @property
    def model_id(self) -> str:
        """Architecture plus exact weights, as an index records it."""
        return str(self._encoder.model_id)

    @property
    def dim(self) -> int:
        """The embedding dimension."""
        return int(self._encoder.dim)

    # -- texts --------------------------------------------------------------------------

    def _get_query_embedding(self, query: str) -> Embedding:
        return self._get_text_embeddings([query])[0]

    def _get_text_embedding(self, text: str) -> Embedding:
        return self._get_text_embeddings([text])[0]

    def _get_text_embeddings(self, texts: list[str]) -> list[Embedding]:
        vectors: list[Embedding] = self._encoder.embed_texts(list(texts)).tolist()
        return vectors

    async def _aget_query_embedding(self, query: str) -> Embedding:
        return (await self._aget_text_embeddings([query]))[0]

    async def _aget_text_embedding(self, text: str) -> Embedding:
        return (await self._aget_text_embeddings([text]))[0]

    async def _aget_text_embeddings(self, texts: list[str]) -> list[Embedding]:
        # The model runs in a worker thread so the event loop keeps serving other tasks.
        return await asyncio.to_thread(self._get_text_embeddings, texts)

    # -- images -------------------------------------------------------------------------

    def _get_image_embedding(self, img_file_path: ImageType) -> Embedding:
        return self._get_image_embeddings([img_file_path])[0]

    def _get_image_embeddings(self, img_file_paths: list[ImageType]) -> list[Embedding]:
        inputs = [to_image_input(image) for image in img_file_paths]
        vectors: list[Embedding] = self._encoder.embed_images(inputs).tolist()
        return vectors

    async def _aget_image_embedding(self, img_file_path: ImageType) -> Embedding:
        return (await self._aget_image_embeddings([img_file_path]))[0]

    async def _aget_image_embeddings(self, img_file_paths: list[ImageType]) -> list[Embedding]:
        return await asyncio.to_thread(self._get_image_embeddings, img_file_paths)


def _describe(encoder: Encoder, given: dict[str, Any]) -> dict[str, Any]:
    """The fields that describe an encoder handed in, so serialization names the real model."""
    spec = {"model_name", "pretrained", "device", "precision"}.intersection(given)
    if spec:
        raise ValueError(
            f"pass encoder=... or a model spec ({', '.join(sorted(spec))}), not both: the "
            "encoder already fixes the model"
        )
    described: dict[str, Any] = {
        "model_name": str(getattr(encoder, "model_name", encoder.model_id)),
        "pretrained": getattr(encoder, "pretrained", None),
    }
    device = getattr(encoder, "device", None)
    if device is not None:
        described["device"] = str(device)
    precision = getattr(encoder, "precision", None)
    if precision in ("fp32", "fp16", "bf16"):
        described["precision"] = precision
    batch_size = getattr(encoder, "batch_size", None)
    if isinstance(batch_size, int) and "embed_batch_size" not in given:
        described["embed_batch_size"] = min(batch_size, 2048)
    return described


def to_image_input(image: ImageLike) -> ImageInput:
    """Map a LlamaIndex image (ImageType, ImageNode) to what clip-multimodal loads.

    Strings (paths, http(s) URLs, base64, data: URIs), Paths, bytes, PIL images and arrays pass
    through; a BytesIO gives its bytes; an ImageNode gives its image (see
    `image_node_to_input`).
    """
    if isinstance(image, ImageNode):
        return image_node_to_input(image)
    if isinstance(image, bytearray | memoryview):
        return bytes(image)
    if hasattr(image, "read") and not isinstance(image, str | bytes | Path):
        return read_bytes(image)  # a BytesIO's whole buffer, another file from its position
    inputs: ImageInput = image
    return inputs


def image_node_to_input(node: ImageNode) -> ImageInput:
    """The image an ImageNode carries, as a clip-multimodal input.

    Looks at, in order: `image` (base64 or a data: URI), `image_path`, `image_url` (fetched by
    clip-multimodal with a timeout and a size cap), then `metadata["file_path"]` (what
    SimpleDirectoryReader records).

    Raises:
        ImageLoadError: the node's base64 is invalid, or it carries no image at all.
    """
    if node.image:
        return _decode_base64(node)
    if node.image_path:
        return node.image_path
    if node.image_url:
        return _from_url(node.image_url)
    file_path = node.metadata.get("file_path")
    if isinstance(file_path, str) and file_path:
        return file_path
    raise ImageLoadError(
        f"ImageNode {node.node_id}",
        "it carries no image: set image (base64), image_path or image_url",
    )


def _decode_base64(node: ImageNode) -> ImageInput:
    return decode_base64(str(node.image), desc=f"ImageNode {node.node_id} (its image field)")


def _from_url(url: str) -> ImageInput:
    parsed = urlparse(url)
    if parsed.scheme == "file":  # file:///photos/a.jpg is a local path
        return unquote(parsed.path)
    return url
