"""CLIP families: each loads its checkpoints into the two towers CLIPEncoder drives.

A family turns a `ResolvedModel` (local files, from `models.resolve_model`) into a
`LoadedModel`: the towers, the per-image transform and the tokenizer, in eval mode on the
device and in the precision asked. The encoder batches, threads and normalizes the same way
for every family:

- open_clip (`_open_clip.py`): architectures with tags or files, `hf-hub:`, `local-dir:`;
- transformers (`_transformers.py`): `transformers:` CLIPModel, SiglipModel, ChineseCLIPModel;
- cn_clip (`_cn_clip.py`): `cn-clip:` Chinese-CLIP checkpoints.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import torch

from clip_multimodal.models import Precision, ResolvedModel

__all__ = ["LoadedModel", "Tokenizer", "Towers", "load_model"]


class Towers(Protocol):
    """The model object: CLIP's two towers, unnormalized features out."""

    @property
    def visual(self) -> torch.nn.Module:
        """The image tower (its parameters' dtype is the pixels' dtype)."""
        ...

    @property
    def logit_scale(self) -> torch.Tensor:
        """The log of the learned temperature."""
        ...

    def encode_image(self, pixels: torch.Tensor) -> torch.Tensor: ...

    def encode_text(self, tokens: torch.Tensor) -> torch.Tensor: ...


class Tokenizer(Protocol):
    """Texts to token ids, shape (n, context_length), where 0 marks padding (and only padding)."""

    context_length: int

    def __call__(self, texts: Sequence[str]) -> torch.Tensor: ...


@dataclass(frozen=True)
class LoadedModel:
    """A family's model, ready for the encoder."""

    towers: Towers
    preprocess: Callable[[Any], torch.Tensor]  #: one PIL image to a (3, H, W) tensor
    tokenizer: Tokenizer


def load_model(resolved: ResolvedModel, device: torch.device, precision: Precision) -> LoadedModel:
    """Load a resolved model with its family's own code, in eval mode, gradients off.

    Raises:
        ModelNotAvailableError: the files cannot be read as that family's checkpoint.
        MissingDependencyError: the family's optional package is not installed.
    """
    if resolved.family == "transformers":
        from clip_multimodal.families._transformers import load_transformers

        loaded = load_transformers(resolved, device, precision)
    elif resolved.family == "cn_clip":
        from clip_multimodal.families._cn_clip import load_cn_clip

        loaded = load_cn_clip(resolved, device, precision)
    else:
        from clip_multimodal.families._open_clip import load_open_clip

        loaded = load_open_clip(resolved, device, precision)
    module: Any = loaded.towers
    module.eval()
    module.requires_grad_(False)
    return loaded


def torch_dtype(precision: Precision) -> torch.dtype:
    """The parameters' dtype for a chosen precision (never `auto` here)."""
    return {"fp16": torch.float16, "bf16": torch.bfloat16}.get(precision, torch.float32)
