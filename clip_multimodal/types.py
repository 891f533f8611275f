"""Shared types: what counts as an image input, and the encoder protocols every part codes against."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO, Protocol, TypeAlias, runtime_checkable

import numpy as np

if TYPE_CHECKING:
    import torch
    from PIL import Image

    from clip_multimodal.errors import ImageLoadError

__all__ = ["Encoder", "ImageEmbeddings", "ImageInput", "ImagePipeline", "PixelEncoder"]

#: Anything `clip_multimodal.images.load_image` accepts: a path (str or Path), an http(s) URL,
#: raw bytes, a base64 string or data: URI, a binary file object (BytesIO, open(..., "rb")),
#: a PIL image, or an HWC uint8 numpy array.
ImageInput: TypeAlias = "str | Path | bytes | BinaryIO | Image.Image | np.ndarray"


@dataclass
class ImageEmbeddings:
    """The result of embedding a batch where some items may fail.

    `vectors[j]` is the embedding of input `indices[j]`; `errors` maps each failed input's
    position to its ImageLoadError.
    """

    vectors: np.ndarray
    indices: list[int]
    errors: dict[int, ImageLoadError] = field(default_factory=dict)

    def vectors_or_raise(self) -> np.ndarray:
        """Every input's vector, in input order; raises the first ImageLoadError if any failed.

        This is `embed_images` in terms of `try_embed_images`.
        """
        if self.errors:
            raise next(iter(self.errors.values()))
        return self.vectors


@runtime_checkable
class Encoder(Protocol):
    """The two CLIP towers behind one object. CLIPEncoder and FakeEncoder implement it."""

    @property
    def model_id(self) -> str: ...

    @property
    def dim(self) -> int: ...

    def embed_texts(self, texts: Sequence[str]) -> np.ndarray: ...

    def embed_images(self, images: Sequence[ImageInput]) -> np.ndarray: ...

    def try_embed_images(self, images: Sequence[ImageInput]) -> ImageEmbeddings: ...


class PixelEncoder(Protocol):
    """A model that embeds batches of pixels prepared elsewhere (an image-preparation strategy).

    CLIPEncoder implements it; `clip_multimodal.gpu.GPUImagePipeline` drives one, so the
    pipeline depends on this protocol and never on the encoder module.
    """

    @property
    def device(self) -> torch.device:
        """Where the model runs, and so where the strategy prepares pixels."""
        ...

    @property
    def preprocess(self) -> Callable[[Any], torch.Tensor]:
        """The model's own per-image transform (PIL image to tensor), the one to mirror."""
        ...

    @property
    def input_dtype(self) -> torch.dtype:
        """The dtype the image tower takes pixels in."""
        ...

    @property
    def batch_size(self) -> int: ...

    @property
    def dim(self) -> int: ...

    def embed_pixels(self, pixels: torch.Tensor) -> np.ndarray:
        """L2-normalized float32 embeddings of preprocessed pixels, shape (n, 3, H, W)."""
        ...


class ImagePipeline(Protocol):
    """An image-preparation strategy an encoder embeds through (the device pipeline)."""

    def embed(self, sources: Sequence[ImageInput]) -> ImageEmbeddings:
        """Embed what loads, in input order; report each failed input by position."""
        ...
