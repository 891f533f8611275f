"""Chroma's native protocol for our encoder: an embedding function and a URI data loader.

`CLIPEmbeddingFunction` implements Chroma's full `EmbeddingFunction` protocol and is
registered (as "clip_multimodal") when this module is imported, so a persisted collection
records it and `client.get_collection(name, data_loader=URILoader())` rebuilds it from the
stored config, with no "embedding function conflict". Import this module before reopening
such a collection in a new process.

Example:
    >>> from clip_multimodal.chroma import CLIPEmbeddingFunction, URILoader
    >>> col = client.create_collection(
    ...     "photos", embedding_function=CLIPEmbeddingFunction(), data_loader=URILoader()
    ... )
    >>> col.add(ids=["a"], uris=["/photos/a.jpg"])
    >>> col.query(query_texts=["a dog"], n_results=3)
"""

from __future__ import annotations

import dataclasses
import threading
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any, cast

import numpy as np
from chromadb.api.types import (
    DataLoader,
    Embeddable,
    EmbeddingFunction,
    Embeddings,
    Space,
    URIs,
)
from chromadb.utils.embedding_functions import register_embedding_function
from PIL import Image

from clip_multimodal.images import load_image
from clip_multimodal.models import (
    DEFAULT_MODEL,
    DEFAULT_PRETRAINED,
    ModelSpec,
    Precision,
    portable_model_name,
)

if TYPE_CHECKING:
    from clip_multimodal.encoder import CLIPEncoder

__all__ = ["CLIPEmbeddingFunction", "URILoader"]

_NAME = "clip_multimodal"
_ENCODERS: dict[tuple[str, str | None, str, str], CLIPEncoder] = {}
_ENCODERS_LOCK = threading.Lock()


def _encoder_key(spec: ModelSpec) -> tuple[str, str | None, str, str]:
    """The model, the device and the precision chosen ("auto" and "cpu" share one); the batch
    size changes no vector, so an encoder loaded with another is shared too."""
    from clip_multimodal.devices import pick_device
    from clip_multimodal.encoder import pick_precision

    device = pick_device(spec.device)
    return spec.model, spec.pretrained, str(device), pick_precision(spec.precision, device)


def _cached_encoder(spec: ModelSpec) -> CLIPEncoder:
    """One encoder per model spec: rebuilding the function never reloads weights."""
    from clip_multimodal.encoder import CLIPEncoder

    key = _encoder_key(spec)
    with _ENCODERS_LOCK:
        encoder = _ENCODERS.get(key)
        if encoder is None:
            encoder = CLIPEncoder.from_spec(spec)
            _ENCODERS[key] = encoder
        return encoder


@register_embedding_function
class CLIPEmbeddingFunction(EmbeddingFunction[Embeddable]):
    """Embeds texts and images for Chroma with a CLIP model, in batches.

    Args:
        model_name: an open_clip architecture, `hf-hub:org/repo`, `local-dir:PATH`,
            `transformers:org/repo`, `cn-clip:ARCH` or `clip-multimodal-demo` (the bundled demo
            model, recorded by that name rather than its install path, so a collection reopens
            after the package moves).
        pretrained: the pretrained tag or weights file for an architecture name.
        device: `auto`, `cpu`, `cuda`, ... for this process. Not recorded in the collection's
            config: the machine that reopens a collection picks its own (`auto`).
        encoder: an already loaded `CLIPEncoder` to use; the config then records its model
            spec, so a reopened collection rebuilds the same model.
        precision, batch_size: as `CLIPEncoder` takes them; like the device, not recorded.

    `spec` holds the `ModelSpec` these build (an encoder's own, when one is passed).

    Texts and images (HWC arrays, as Chroma's data loaders give) may come in one call; each
    modality is embedded as one batch. Vectors are L2-normalized, so the default space is
    cosine.
    """

    def __init__(
        self,
        model_name: str = DEFAULT_MODEL,
        pretrained: str | None = DEFAULT_PRETRAINED,
        device: str = "auto",
        encoder: CLIPEncoder | None = None,
        *,
        precision: Precision = "auto",
        batch_size: int | None = None,
    ) -> None:
        spec = (
            ModelSpec(model_name, pretrained, device, precision, batch_size)
            if encoder is None
            else encoder.spec
        )
        # The demo model is recorded by its alias, not its install path.
        self.spec = dataclasses.replace(spec, model=portable_model_name(spec.model))
        if encoder is not None:
            with _ENCODERS_LOCK:
                _ENCODERS.setdefault(_encoder_key(self.spec), encoder)
        self._encoder = encoder

    @property
    def model_name(self) -> str:
        return self.spec.model

    @property
    def pretrained(self) -> str | None:
        return self.spec.pretrained

    @property
    def device(self) -> str:
        return self.spec.device

    @property
    def encoder(self) -> CLIPEncoder:
        """The encoder, loaded on first use (building from config loads no weights early)."""
        if self._encoder is None:
            self._encoder = _cached_encoder(self.spec)
        return self._encoder

    def __call__(self, input: Embeddable) -> Embeddings:
        items = list(input)
        texts = [i for i, item in enumerate(items) if isinstance(item, str)]
        pictures = [i for i, item in enumerate(items) if not isinstance(item, str)]
        out: list[np.ndarray] = [np.empty(0, np.float32)] * len(items)
        if texts:
            vectors = self.encoder.embed_texts([cast(str, items[i]) for i in texts])
            for row, i in enumerate(texts):
                out[i] = vectors[row]
        if pictures:
            arrays = [_as_uint8(items[i]) for i in pictures]
            vectors = self.encoder.embed_images(arrays)
            for row, i in enumerate(pictures):
                out[i] = vectors[row]
        return cast(Embeddings, out)

    @staticmethod
    def name() -> str:
        return _NAME

    def default_space(self) -> Space:
        return "cosine"

    def supported_spaces(self) -> list[Space]:
        return ["cosine", "ip", "l2"]  # unit vectors: all three rank alike

    def is_legacy(self) -> bool:
        return False

    def get_config(self) -> dict[str, Any]:
        # The model only: a device is a property of the machine, not of the collection.
        return {"model_name": self.model_name, "pretrained": self.pretrained}

    @staticmethod
    def build_from_config(config: dict[str, Any]) -> CLIPEmbeddingFunction:
        """Rebuild from a stored config; a `device` that older versions stored is ignored, so
        a collection made on a GPU still answers on a CPU-only machine."""
        CLIPEmbeddingFunction.validate_config(config)
        return CLIPEmbeddingFunction(
            model_name=config["model_name"], pretrained=config.get("pretrained")
        )

    @staticmethod
    def validate_config(config: dict[str, Any]) -> None:
        if not isinstance(config.get("model_name"), str) or not config["model_name"]:
            raise ValueError(f"a {_NAME} config needs a model_name string, got {config!r}")
        pretrained = config.get("pretrained")
        if pretrained is not None and not isinstance(pretrained, str):
            raise ValueError(f"{_NAME} config 'pretrained' must be a string, got {pretrained!r}")

    def validate_config_update(
        self, old_config: dict[str, Any], new_config: dict[str, Any]
    ) -> None:
        for key in ("model_name", "pretrained"):
            if key in new_config and new_config[key] != old_config.get(key):
                raise ValueError(
                    f"cannot change {key} of a collection's embedding function: its vectors "
                    "came from the old model; create a new collection instead"
                )


def _as_uint8(image: Any) -> np.ndarray:
    """Chroma's loaders give arrays of any dtype; the encoder wants uint8.

    Grey arrays (what Chroma's `ImageLoader` gives for 16-bit and 32-bit PNGs, floats) go
    through the core loader, so they are rescaled exactly as our own loader rescales the file.
    Colour arrays: 16-bit values are rescaled to 8 bits, floats in [0, 1] to [0, 255].
    """
    array: np.ndarray = np.asarray(image)
    if array.dtype == np.uint8:
        return array
    if array.ndim == 3 and array.shape[2] == 1:
        array = array[:, :, 0]
    if array.ndim == 2 and array.dtype in _GREY_DTYPES:
        grey = array.astype(_GREY_DTYPES[array.dtype], copy=False)
        return np.asarray(load_image(Image.fromarray(grey)))
    values = np.nan_to_num(array.astype(np.float64))
    if array.dtype == np.uint16 or (values.size and values.max() > 255):
        values = values.clip(0, 65535) / 257.0  # 16-bit
    elif np.issubdtype(array.dtype, np.floating) and values.size and values.max() <= 1.0:
        values = values * 255.0  # floats in [0, 1]
    clipped: np.ndarray = np.clip(np.rint(values), 0, 255)
    return clipped.astype(np.uint8)


#: Grey array dtypes PIL opens as 16-bit, 32-bit and float images, and the dtype it takes.
_GREY_DTYPES: dict[np.dtype[Any], type[np.generic]] = {
    np.dtype(np.uint16): np.uint16,
    np.dtype(np.int32): np.int32,
    np.dtype(np.float32): np.float32,
    np.dtype(np.float64): np.float32,
}


class URILoader(DataLoader[list[np.ndarray | None]]):
    """Loads paths and http(s) URLs into RGB uint8 arrays, through the core image loader.

    Unlike Chroma's `ImageLoader` (local paths only, raw PIL modes), it fetches URLs with a
    timeout and a size cap, applies EXIF orientation, and converts every mode to RGB. Loads
    run on `max_workers` threads. A None URI gives None.
    """

    def __init__(self, max_workers: int = 8, timeout: float = 10.0) -> None:
        self.max_workers = max_workers
        self.timeout = timeout

    def __call__(self, uris: URIs | Sequence[str | None]) -> list[np.ndarray | None]:
        uris = list(uris)
        if len(uris) <= 1:
            return [self._load(u) for u in uris]
        with ThreadPoolExecutor(min(self.max_workers, len(uris))) as pool:
            return list(pool.map(self._load, uris))

    def _load(self, uri: str | None) -> np.ndarray | None:
        if uri is None:
            return None
        return np.asarray(load_image(uri, timeout=self.timeout))
