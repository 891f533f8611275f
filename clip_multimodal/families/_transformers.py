"""Hugging Face transformers checkpoints: CLIPModel, SiglipModel and ChineseCLIPModel.

The towers run transformers' own model classes, tokenizer and image processor, so embeddings
equal `get_text_features`/`get_image_features`, normalized. Token ids travel through the
encoder shifted up by one, so that 0 marks padding there as for the other families (the hub's
pad ids are real ids: CLIP pads with <|endoftext|>, SigLIP with </s>).
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from typing import Any

import torch

from clip_multimodal.errors import ModelNotAvailableError, require
from clip_multimodal.families import LoadedModel, torch_dtype
from clip_multimodal.models import TRANSFORMERS, Precision, ResolvedModel

__all__ = ["MODEL_TYPES", "load_transformers"]

#: The config.json model types this family loads.
MODEL_TYPES = ("clip", "siglip", "chinese_clip")


def load_transformers(
    resolved: ResolvedModel, device: torch.device, precision: Precision
) -> LoadedModel:
    name = f"{TRANSFORMERS}{resolved.open_clip_name}"
    require("transformers", "transformers", f"model {name}")
    from transformers import AutoConfig, AutoImageProcessor, AutoModel, AutoTokenizer

    folder = str(resolved.pretrained)
    try:
        config = AutoConfig.from_pretrained(folder)
        if config.model_type not in MODEL_TYPES:
            raise ModelNotAvailableError(
                f"{name} is a {config.model_type!r} model; {TRANSFORMERS} loads model types "
                f"{', '.join(MODEL_TYPES)}"
            )
        model = AutoModel.from_pretrained(folder)
        tokenizer = AutoTokenizer.from_pretrained(folder)
        processor = AutoImageProcessor.from_pretrained(folder)  # type: ignore[no-untyped-call]
    except (OSError, ValueError) as exc:
        raise ModelNotAvailableError(f"cannot load {name} from {folder}: {exc}") from exc
    model.to(device=device, dtype=torch_dtype(precision))
    # SigLIP pools the last position, padding included: it runs at full length, as trained.
    full_length = config.model_type == "siglip"
    text = ShiftedTokenizer(tokenizer, _context_length(config, tokenizer))
    uses_mask = "attention_mask" in tokenizer.model_input_names
    towers = TransformersTowers(model, int(tokenizer.pad_token_id or 0), uses_mask, full_length)
    return LoadedModel(towers, ImageProcessorTransform(processor), text)


def _context_length(config: Any, tokenizer: Any) -> int:
    positions = int(config.text_config.max_position_embeddings)
    limit = getattr(tokenizer, "model_max_length", None)
    return min(positions, int(limit)) if isinstance(limit, int) and limit > 0 else positions


class TransformersTowers(torch.nn.Module):
    """A transformers model's two `get_*_features`, taking the encoder's shifted tokens."""

    def __init__(self, model: Any, pad_id: int, uses_mask: bool, full_length: bool) -> None:
        super().__init__()
        self.hf = model
        self.visual = model.vision_model
        self.pad_id = pad_id
        self.uses_mask = uses_mask
        self.trims_padding = not full_length  #: reported as the encoder's trims_text_padding

    @property
    def logit_scale(self) -> torch.Tensor:
        scale: torch.Tensor = self.hf.logit_scale
        return scale

    def encode_image(self, pixels: torch.Tensor) -> torch.Tensor:
        return _features(self.hf.get_image_features(pixel_values=pixels))

    def encode_text(self, tokens: torch.Tensor) -> torch.Tensor:
        mask = tokens != 0
        if self.trims_padding and tokens.shape[0]:
            # Masked padding never reaches the pooled position: the batch's longest suffices.
            length = max(1, int(mask.sum(dim=1).max()))
            tokens, mask = tokens[:, :length], mask[:, :length]
        ids = torch.where(mask, tokens - 1, self.pad_id)
        extra = {"attention_mask": mask.long()} if self.uses_mask else {}
        return _features(self.hf.get_text_features(input_ids=ids, **extra))


def _features(output: Any) -> torch.Tensor:
    # transformers 4.x returns the projected features; 5.x an output whose pooler_output they are.
    features: torch.Tensor = output if isinstance(output, torch.Tensor) else output.pooler_output
    return features


class ShiftedTokenizer:
    """The checkpoint's tokenizer, padded to the context length, ids + 1 (0: padding)."""

    def __init__(self, tokenizer: Any, context_length: int) -> None:
        if tokenizer.pad_token is None:  # padding is masked (or, for SigLIP, its </s>)
            tokenizer.pad_token = tokenizer.eos_token
        self.tokenizer = tokenizer
        self.context_length = context_length
        self.num_special_tokens = int(tokenizer.num_special_tokens_to_add())
        # A fast tokenizer sets its padding and truncation per call, in place: concurrent calls
        # with different settings can fail with "Already borrowed" (huggingface/transformers
        # #47085; not seen with the versions tested here), so calls take turns.
        self._lock = threading.Lock()

    def __call__(self, texts: Sequence[str]) -> torch.Tensor:
        with self._lock:
            batch = self.tokenizer(
                list(texts),
                padding="max_length",
                truncation=True,
                max_length=self.context_length,
                return_tensors="pt",
            )
        ids: torch.Tensor = batch["input_ids"] + 1
        mask = batch.get("attention_mask")
        return ids if mask is None else torch.where(mask.bool(), ids, 0)

    def encode(self, text: str) -> list[int]:
        """The text's ids without special tokens (for the truncation warning)."""
        cap = self.context_length  # enough to tell an overflow; no warning from the tokenizer
        with self._lock:
            ids: list[int] = self.tokenizer(
                text, add_special_tokens=False, truncation=True, max_length=cap
            )["input_ids"]
        return ids


class ImageProcessorTransform:
    """The checkpoint's image processor, one PIL image to a (3, H, W) tensor.

    `transforms` describes it as torchvision steps where it is a shortest-side resize and a
    square centre crop (CLIP, Chinese-CLIP), so the device pipeline can mirror it (with its
    floored crop offsets); SigLIP's squashing resize is not mirrored (the CPU path embeds).
    """

    crop_floor = True

    def __init__(self, processor: Any) -> None:
        self.processor = processor
        self.transforms = _mirrored_steps(processor)

    def __call__(self, image: Any) -> torch.Tensor:
        pixels: torch.Tensor = self.processor(images=image, return_tensors="pt")["pixel_values"]
        return pixels[0]


def _mirrored_steps(processor: Any) -> list[Any]:
    from torchvision.transforms import CenterCrop, InterpolationMode, Normalize, Resize

    size = dict(getattr(processor, "size", None) or {})
    crop = dict(getattr(processor, "crop_size", None) or {})
    square = crop.get("height") is not None and crop.get("height") == crop.get("width")
    plain = getattr(processor, "do_rescale", False) and getattr(processor, "do_normalize", False)
    if "shortest_edge" not in size or not getattr(processor, "do_center_crop", False):
        return []
    if not (square and plain) or abs(float(processor.rescale_factor) - 1 / 255) > 1e-9:
        return []
    modes = {2: InterpolationMode.BILINEAR, 3: InterpolationMode.BICUBIC}
    resample = getattr(processor, "resample", None)
    mode = modes.get(int(getattr(resample, "value", resample) or 0))
    if mode is None:
        return []
    return [
        Resize(int(size["shortest_edge"]), interpolation=mode),
        CenterCrop(int(crop["height"])),
        Normalize(processor.image_mean, processor.image_std),
    ]
