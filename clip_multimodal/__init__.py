"""clip-multimodal: fast, correct CLIP multimodal retrieval for LLM apps.

The public API is flat. Names load lazily, so `import clip_multimodal` (and the CLI's --help)
does not import torch.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from clip_multimodal._lazy import lazy_exports

__version__ = "0.1.0"

_EXPORTS = {
    "AccessDeniedError": "clip_multimodal.access",
    "AccessPolicy": "clip_multimodal.access",
    "CLIPEncoder": "clip_multimodal.encoder",
    "ImageIndex": "clip_multimodal.index",
    "SearchHit": "clip_multimodal.index",
    "IndexReport": "clip_multimodal.index",
    "CLIPEmbeddingFunction": "clip_multimodal.chroma",
    "FakeEncoder": "clip_multimodal.testing",
    "load_image": "clip_multimodal.images",
    "DocumentOptions": "clip_multimodal.documents",
    "Provenance": "clip_multimodal.documents",
    "DocumentLoadError": "clip_multimodal.errors",
    "DEMO_MODEL": "clip_multimodal.models",
    "DEMO_MODEL_NAME": "clip_multimodal.models",
    "ModelSpec": "clip_multimodal.models",
    "Encoder": "clip_multimodal.types",
    "ImageEmbeddings": "clip_multimodal.types",
    "ImageInput": "clip_multimodal.types",
    "CLIPMultimodalError": "clip_multimodal.errors",
    "ImageLoadError": "clip_multimodal.errors",
    "IncompatibleIndexError": "clip_multimodal.errors",
    "IndexDamagedError": "clip_multimodal.errors",
    "IndexLockedError": "clip_multimodal.errors",
    "IndexNotFoundError": "clip_multimodal.errors",
    "IndexUnavailableError": "clip_multimodal.errors",
    "InvalidCollectionNameError": "clip_multimodal.errors",
    "InvalidModelSpecError": "clip_multimodal.errors",
    "MissingDependencyError": "clip_multimodal.errors",
    "ModelNotAvailableError": "clip_multimodal.errors",
    "ReadOnlyIndexError": "clip_multimodal.errors",
}

__all__ = [
    "DEMO_MODEL",
    "DEMO_MODEL_NAME",
    "AccessDeniedError",
    "AccessPolicy",
    "CLIPEmbeddingFunction",
    "CLIPEncoder",
    "CLIPMultimodalError",
    "DocumentLoadError",
    "DocumentOptions",
    "Encoder",
    "FakeEncoder",
    "ImageEmbeddings",
    "ImageIndex",
    "ImageInput",
    "ImageLoadError",
    "IncompatibleIndexError",
    "IndexDamagedError",
    "IndexLockedError",
    "IndexNotFoundError",
    "IndexReport",
    "IndexUnavailableError",
    "InvalidCollectionNameError",
    "InvalidModelSpecError",
    "MissingDependencyError",
    "ModelNotAvailableError",
    "ModelSpec",
    "Provenance",
    "ReadOnlyIndexError",
    "SearchHit",
    "__version__",
    "load_image",
]

if TYPE_CHECKING:
    from clip_multimodal.access import AccessDeniedError, AccessPolicy
    from clip_multimodal.chroma import CLIPEmbeddingFunction
    from clip_multimodal.documents import DocumentOptions, Provenance
    from clip_multimodal.encoder import CLIPEncoder
    from clip_multimodal.errors import (
        CLIPMultimodalError,
        DocumentLoadError,
        ImageLoadError,
        IncompatibleIndexError,
        IndexDamagedError,
        IndexLockedError,
        IndexNotFoundError,
        IndexUnavailableError,
        InvalidCollectionNameError,
        InvalidModelSpecError,
        MissingDependencyError,
        ModelNotAvailableError,
        ReadOnlyIndexError,
    )
    from clip_multimodal.images import load_image
    from clip_multimodal.index import ImageIndex, IndexReport, SearchHit
    from clip_multimodal.models import DEMO_MODEL, DEMO_MODEL_NAME, ModelSpec
    from clip_multimodal.testing import FakeEncoder
    from clip_multimodal.types import Encoder, ImageEmbeddings, ImageInput

__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
