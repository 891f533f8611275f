"""open_clip's eval preprocessing as batched tensor ops that run on any device.

open_clip's eval transform for a square input is Resize(size, BICUBIC) on the shortest side,
CenterCrop(size), ToTensor and Normalize(mean, std), applied to a PIL image. Here the same
steps run on uint8 CHW tensors, batched per input size: torch's antialiased bicubic
(Keys a=-0.5, PIL's kernel), then rounding to uint8 levels as PIL's resize does, torchvision's
crop offsets and one fused multiply-add for ToTensor + Normalize. The result is not bit-exact:
float rounding inside the resize leaves up to one uint8 level (two when upscaling ~27x) from
PIL, mean ~1e-5 after Normalize (tests/test_gpu_pipeline.py measures it).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F

from clip_multimodal.errors import CLIPMultimodalError
from clip_multimodal.gpu.memory import to_device

__all__ = ["PreprocessSpec", "UnsupportedPreprocessError", "center_crop", "preprocess_batch"]

# Resizing one group in float32 costs 12 bytes per input pixel; this many images per call
# keeps a group of 640x480 inputs under 1 GB of temporaries.
_GROUP = 256


class UnsupportedPreprocessError(CLIPMultimodalError):
    """The model's preprocessing is not the square shortest-side resize + crop this mirrors."""


@dataclass(frozen=True)
class PreprocessSpec:
    """The parameters of open_clip's eval transform for one model.

    Attributes:
        size: the square side the model takes (224 for ViT-B-32).
        mean: per-channel mean, in [0, 1] units.
        std: per-channel standard deviation, in [0, 1] units.
        interpolation: "bicubic" or "bilinear".
        crop_floor: crop offsets floored (transformers' image processors) instead of rounded
            (torchvision's CenterCrop); a transform says so with a true `crop_floor` attribute.
    """

    size: int
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    interpolation: str = "bicubic"
    crop_floor: bool = False

    @classmethod
    def from_transform(cls, transform: Any) -> PreprocessSpec:
        """Read the spec off open_clip's eval `Compose` (the encoder's `preprocess`).

        Raises:
            UnsupportedPreprocessError: the transform is not Resize(int) + CenterCrop(square)
                + Normalize (e.g. `resize_mode="longest"` or `"squash"`); use the CPU path.
        """
        from torchvision.transforms import CenterCrop, InterpolationMode, Normalize, Resize

        steps = list(getattr(transform, "transforms", []))
        resize = next((t for t in steps if isinstance(t, Resize)), None)
        crop = next((t for t in steps if isinstance(t, CenterCrop)), None)
        norm = next((t for t in steps if isinstance(t, Normalize)), None)
        if resize is None or crop is None or norm is None or resize.max_size is not None:
            raise UnsupportedPreprocessError(
                f"cannot mirror preprocessing {transform!r} on the device: it is not "
                "Resize(shortest side) + CenterCrop + Normalize; embed on the CPU path instead"
            )
        size = resize.size if isinstance(resize.size, int) else None
        if isinstance(resize.size, Sequence) and len(resize.size) == 1:
            size = int(resize.size[0])
        if size is None or tuple(crop.size) != (size, size):
            raise UnsupportedPreprocessError(
                f"cannot mirror preprocessing {transform!r} on the device: only a square crop "
                "of a shortest-side resize is supported; embed on the CPU path instead"
            )
        modes = {InterpolationMode.BICUBIC: "bicubic", InterpolationMode.BILINEAR: "bilinear"}
        if resize.interpolation not in modes:
            raise UnsupportedPreprocessError(
                f"cannot mirror {resize.interpolation} resizing on the device; use the CPU path"
            )
        mean, std = _triple(norm.mean), _triple(norm.std)
        floor = bool(getattr(transform, "crop_floor", False))
        return cls(size, mean, std, modes[resize.interpolation], floor)


def _triple(values: Sequence[float]) -> tuple[float, float, float]:
    v = [float(x) for x in values]
    return (v[0], v[1], v[2]) if len(v) == 3 else (v[0], v[0], v[0])


def resized_size(height: int, width: int, size: int) -> tuple[int, int]:
    """torchvision's shortest-side output size: the long side is truncated, not rounded."""
    if width <= height:
        return int(size * height / width), size
    return size, int(size * width / height)


def center_crop(pixels: torch.Tensor, size: int, floor: bool = False) -> torch.Tensor:
    """torchvision's CenterCrop offsets (rounded half-differences) on (..., H, W); with
    `floor`, transformers' (floored)."""
    height, width = pixels.shape[-2:]
    top = (height - size) // 2 if floor else round((height - size) / 2.0)
    left = (width - size) // 2 if floor else round((width - size) / 2.0)
    return pixels[..., top : top + size, left : left + size]


def _resize_group(pixels: torch.Tensor, spec: PreprocessSpec) -> torch.Tensor:
    """(N, 3, H, W) uint8 of one size -> (N, 3, size, size) float32 in [0, 255], cropped.

    PIL resizes in two passes, horizontal then vertical, rounding and clipping to uint8 in
    between; doing the same keeps every pixel within one level of PIL (one pass in float
    differs by up to 20 levels where bicubic overshoot is clipped).
    """
    height, width = pixels.shape[-2:]
    out_h, out_w = resized_size(height, width, spec.size)
    x = pixels.float()
    for size in ((height, out_w), (out_h, out_w)):
        if tuple(x.shape[-2:]) != size:  # PIL skips a pass whose size is unchanged
            x = F.interpolate(x, size, mode=spec.interpolation, antialias=True)
            x = x.round_().clamp_(0, 255)
    return center_crop(x, spec.size, spec.crop_floor)


def preprocess_batch(
    images: Sequence[torch.Tensor], spec: PreprocessSpec, dtype: torch.dtype = torch.float32
) -> torch.Tensor:
    """uint8 (3, H, W) images, any sizes, on one device -> the model's input batch.

    Images of the same size are resized in one call, in groups; the output keeps the input
    order, shape (N, 3, size, size), in `dtype`.
    """
    if not images:
        raise ValueError("preprocess_batch needs at least one image")
    device = images[0].device
    # Host-built constants reach the device through pinned, non-blocking copies: a plain
    # torch.tensor(..., device=cuda) would stall this stream once per call.
    scale = to_device(torch.tensor([1.0 / (255.0 * s) for s in spec.std]), device)
    shift = to_device(
        torch.tensor([m / s for m, s in zip(spec.mean, spec.std, strict=True)]), device
    )
    by_size: dict[tuple[int, int], list[int]] = {}
    for i, image in enumerate(images):
        if image.dim() != 3 or image.shape[0] != 3 or image.dtype != torch.uint8:
            raise ValueError(f"image {i}: expected uint8 (3, H, W), got {tuple(image.shape)}")
        by_size.setdefault((image.shape[1], image.shape[2]), []).append(i)
    order = [i for indices in by_size.values() for i in indices]
    staged = torch.empty((len(images), 3, spec.size, spec.size), dtype=dtype, device=device)
    row = 0  # groups fill `staged` in `order`; one index copy puts the rows back in place
    for indices in by_size.values():
        for start in range(0, len(indices), _GROUP):
            part = indices[start : start + _GROUP]
            crops = _resize_group(torch.stack([images[i] for i in part]), spec)
            normalized = crops * scale.view(1, 3, 1, 1) - shift.view(1, 3, 1, 1)
            staged[row : row + len(part)] = normalized.to(dtype)
            row += len(part)
    if order == sorted(order):
        return staged
    out = torch.empty_like(staged)
    out[to_device(torch.tensor(order), device)] = staged
    return out
