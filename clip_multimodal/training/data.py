"""Training tensors from samples: compact uint8 image storage, normalisation, augmentation."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch.utils.data import Dataset

from clip_multimodal.images import load_image
from clip_multimodal.training.csv_data import PairTable

__all__ = ["PairDataset", "ShiftAndNormalize", "images_to_uint8", "tokenize"]


def images_to_uint8(images: Sequence[Image.Image], size: int) -> torch.Tensor:
    """Stack RGB images of side `size` as a (n, 3, size, size) uint8 tensor.

    uint8 keeps a few tens of thousands of training images in a few hundred MB; batches are
    converted to normalized floats on the fly.
    """
    arrays = []
    for image in images:
        rgb = image.convert("RGB")
        if rgb.size != (size, size):
            rgb = rgb.resize((size, size), Image.Resampling.BICUBIC)
        arrays.append(np.asarray(rgb, dtype=np.uint8))
    stacked = np.stack(arrays) if arrays else np.zeros((0, size, size, 3), dtype=np.uint8)
    return torch.from_numpy(stacked).permute(0, 3, 1, 2).contiguous()


def tokenize(
    tokenizer: Callable[..., Any], captions: Sequence[str], batch: int = 4096
) -> torch.Tensor:
    """Token ids of every caption, tokenized in chunks."""
    parts = [tokenizer(list(captions[i : i + batch])) for i in range(0, len(captions), batch)]
    return torch.cat(parts) if parts else torch.zeros((0, 0), dtype=torch.long)


class ShiftAndNormalize:
    """uint8 batch -> float batch normalized like open_clip's preprocess, randomly shifted.

    Each image moves by up to `max_shift` pixels in x and y (edges replicated), so the model
    cannot tie a class to exact pixel positions. `max_shift=0` gives exactly the eval transform
    of an image already at the model's size (ToTensor, then Normalize).
    """

    def __init__(self, mean: Sequence[float], std: Sequence[float], max_shift: int = 0) -> None:
        self.mean = torch.tensor(mean, dtype=torch.float32).view(1, 3, 1, 1)
        self.std = torch.tensor(std, dtype=torch.float32).view(1, 3, 1, 1)
        self.max_shift = max_shift

    def __call__(self, images: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        x = images.float().div_(255.0)
        if self.max_shift > 0:
            x = self._shift(x, generator)
        return (x - self.mean) / self.std

    def _shift(self, x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        s = self.max_shift
        n, _, h, w = x.shape
        padded = F.pad(x, (s, s, s, s), mode="replicate")
        offsets = torch.randint(0, 2 * s + 1, (n, 2), generator=generator).tolist()
        return torch.stack(
            [padded[i, :, dy : dy + h, dx : dx + w] for i, (dy, dx) in enumerate(offsets)]
        )


class PairDataset(Dataset[tuple[torch.Tensor, torch.Tensor]]):
    """(preprocessed image, caption tokens) for each usable CSV row, images decoded on access
    with the encoder's own loader, so memory stays flat for any dataset size."""

    def __init__(self, table: PairTable, transform: Any, tokens: torch.Tensor) -> None:
        self.paths, self.transform, self.tokens = table.paths, transform, tokens

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        return self.transform(load_image(self.paths[index])), self.tokens[index]
