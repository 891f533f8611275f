"""Chinese-CLIP's own checkpoints (`cn-clip:ARCH`), run with the cn_clip package's model.

The model is cn_clip's `CLIP`, built by its `create_model` from the checkpoint's `state_dict`,
as its `load_from_name` does; texts are tokenized by its BERT tokenizer (context length 52,
as all its released models were trained) and images by its `image_transform`.
"""

from __future__ import annotations

import contextlib
import io
import pickle
from collections.abc import Sequence
from typing import Any

import torch

from clip_multimodal.errors import ModelNotAvailableError, require
from clip_multimodal.families import LoadedModel, torch_dtype
from clip_multimodal.models import CN_CLIP, Precision, ResolvedModel

__all__ = ["CnClipTokenizer", "load_cn_clip"]


def load_cn_clip(
    resolved: ResolvedModel, device: torch.device, precision: Precision
) -> LoadedModel:
    arch, path = resolved.open_clip_name, str(resolved.pretrained)
    require("cn_clip", "cn-clip", f"model {CN_CLIP}{arch}")
    from cn_clip.clip.model import convert_weights
    from cn_clip.clip.utils import _MODEL_INFO, create_model, image_transform

    info = _MODEL_INFO[arch]
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
        # create_model prints its configs; a library must not write to its user's stdout.
        with contextlib.redirect_stdout(io.StringIO()):
            model = create_model(info["struct"], checkpoint)
    except (OSError, RuntimeError, KeyError, TypeError, pickle.UnpicklingError) as exc:
        raise ModelNotAvailableError(
            f"cannot read {path} as a {CN_CLIP}{arch} checkpoint (a dict with its "
            f"'state_dict'): {exc}"
        ) from exc
    _set_precision(model, precision, convert_weights)
    model.to(device)
    return LoadedModel(model, image_transform(info["input_resolution"]), CnClipTokenizer())


def _set_precision(model: torch.nn.Module, precision: Precision, convert_weights: Any) -> None:
    """fp32 everywhere, or cn_clip's own half layout (LayerNorms stay fp32), in fp16 or bf16."""
    model.float()
    if precision in ("fp16", "bf16"):
        convert_weights(model)
        if precision == "bf16":
            for tensor in [*model.parameters(), *model.buffers()]:
                if tensor.dtype == torch.float16:
                    tensor.data = tensor.data.to(torch_dtype(precision))


class CnClipTokenizer:
    """cn_clip's `tokenize`: [CLS] text [SEP], padded with [PAD] (id 0) to 52 tokens."""

    context_length = 52
    num_special_tokens = 2

    def __call__(self, texts: Sequence[str]) -> torch.Tensor:
        from cn_clip.clip import tokenize

        tokens: torch.Tensor = tokenize(list(texts), self.context_length)
        return tokens

    def encode(self, text: str) -> list[int]:
        """The text's ids without [CLS] and [SEP] (for the truncation warning)."""
        from cn_clip.clip import _tokenizer

        ids: list[int] = _tokenizer.convert_tokens_to_ids(_tokenizer.tokenize(text))
        return ids
