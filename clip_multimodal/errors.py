"""The exception types of clip-multimodal. Each message names the input and the fix."""

from __future__ import annotations

__all__ = [
    "CLIPMultimodalError",
    "DocumentLoadError",
    "ImageLoadError",
    "IncompatibleIndexError",
    "IndexDamagedError",
    "IndexLockedError",
    "IndexNotFoundError",
    "IndexUnavailableError",
    "InvalidCollectionNameError",
    "InvalidModelSpecError",
    "MissingDependencyError",
    "ModelNotAvailableError",
    "ReadOnlyIndexError",
    "TemplateError",
]


class CLIPMultimodalError(Exception):
    """Base class of every error this package raises on purpose."""


class ModelNotAvailableError(CLIPMultimodalError):
    """The model's weights are neither cached nor reachable (raised fast, without retries)."""


class ImageLoadError(CLIPMultimodalError, ValueError):
    """An image input could not be read or decoded.

    Attributes:
        source: a short, printable description of the input (a path, a URL, "<bytes: 120 B>").
        reason: why it failed.
    """

    def __init__(self, source: str, reason: str) -> None:
        super().__init__(f"cannot load image {source}: {reason}")
        self.source = source
        self.reason = reason


class DocumentLoadError(ImageLoadError):
    """A document (PDF, PPTX) or one image inside it could not be read: encrypted, truncated,
    damaged, or not a document at all. `source` names the file (and page), `reason` why."""

    def __init__(self, source: str, reason: str) -> None:
        super().__init__(source, reason)
        self.args = (f"cannot read document {source}: {reason}",)


class IncompatibleIndexError(CLIPMultimodalError):
    """A collection was built with another model (or dimension) than the one offered."""


class IndexUnavailableError(CLIPMultimodalError):
    """The Chroma server or store cannot be reached."""


class IndexDamagedError(CLIPMultimodalError):
    """The Chroma store's files are damaged or missing; the message names the store's path and
    the repair (`clip-multimodal index DIR --rebuild`, or `ImageIndex.rebuild`)."""


class IndexLockedError(CLIPMultimodalError):
    """Another process is writing to the embedded store; the message names the store's path and
    the writer's pid."""


class IndexNotFoundError(CLIPMultimodalError, LookupError):
    """The collection asked for does not exist (opening read-only never creates one)."""


class InvalidCollectionNameError(CLIPMultimodalError, ValueError):
    """A collection name Chroma would refuse; raised before any model loads or store opens."""


class InvalidModelSpecError(CLIPMultimodalError, ValueError):
    """A model spec field (model, pretrained, device, precision, batch_size) is invalid.

    Attributes:
        field: the field's name, as `ModelSpec` spells it.
    """

    def __init__(self, field: str, reason: str) -> None:
        super().__init__(f"invalid model spec: {field} {reason}")
        self.field = field


class ReadOnlyIndexError(CLIPMultimodalError):
    """A write (add, index_folder, delete) was asked of an index opened read-only."""


class TemplateError(CLIPMultimodalError, ValueError):
    """A prompt template is not a text with exactly one `{}` where the label goes."""


class MissingDependencyError(CLIPMultimodalError, ImportError):
    """An optional feature's package is not installed; the message names the extra to install."""


def require(module: str, extra: str, feature: str) -> object:
    """Import an optional module or raise MissingDependencyError naming the extra."""
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise MissingDependencyError(
            f"{feature} needs the '{module}' package, which is not installed. "
            f'Install it with: pip install "clip-multimodal[{extra}]"'
        ) from exc
