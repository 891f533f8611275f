"""open_clip's models: architectures with a tag or weights file, `hf-hub:`, `local-dir:`."""

from __future__ import annotations

import torch

from clip_multimodal.errors import ModelNotAvailableError
from clip_multimodal.families import LoadedModel
from clip_multimodal.models import Precision, ResolvedModel, keep_root_logging

__all__ = ["load_open_clip"]


def load_open_clip(
    resolved: ResolvedModel, device: torch.device, precision: Precision
) -> LoadedModel:
    import open_clip

    r = resolved
    try:
        with keep_root_logging():  # open_clip's logging.info would configure the root logger
            model, _, preprocess = open_clip.create_model_and_transforms(
                r.open_clip_name,
                pretrained=r.pretrained,
                device=device,
                precision=precision,
                **r.create_kwargs,
            )
            tokenizer = open_clip.get_tokenizer(r.open_clip_name)
    except (FileNotFoundError, OSError) as exc:
        raise ModelNotAvailableError(f"cannot load model {r.open_clip_name}: {exc}") from exc
    return LoadedModel(model, preprocess, tokenizer)
