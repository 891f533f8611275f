"""Validation during a run: recall@1/5/10 both ways and zero-shot accuracy on the val pairs."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader

from clip_multimodal import zeroshot
from clip_multimodal.training.build import BuiltModel
from clip_multimodal.training.config import DataConfig
from clip_multimodal.training.csv_data import PairTable
from clip_multimodal.training.data import PairDataset, tokenize
from clip_multimodal.training.metrics import caption_recall, class_embeddings, zeroshot_accuracy
from clip_multimodal.training.step import autocast

__all__ = ["Evaluator"]


class Evaluator:
    """Embeds the validation pairs with the model as it stands and scores retrieval.

    Identical captions are embedded once (and count as one text in recall).
    """

    def __init__(self, data: DataConfig, val: PairTable, built: BuiltModel) -> None:
        self.data, self.val, self.built = data, val, built
        unique, self.inverse = np.unique(np.asarray(val.captions), return_inverse=True)
        self.tokens = tokenize(built.tokenizer, list(unique))

    @torch.no_grad()
    def evaluate(self, device: torch.device, dtype: torch.dtype | None) -> dict[str, float]:
        """The metrics of the current weights (the model's train/eval mode is restored)."""
        model = self.built.model
        was_training = model.training
        model.eval()
        images = self._embed_images(model, device, dtype)
        texts = self._embed_texts(model, self.tokens, device, dtype)
        metrics = caption_recall(images, texts[self.inverse], self.val.captions)
        if self.val.labels is not None:
            metrics.update(self._zeroshot(model, images, device, dtype))
        model.train(was_training)
        return metrics

    def _embed_images(self, model: Any, device: torch.device, dtype: Any) -> np.ndarray:
        labels = torch.zeros(len(self.val), dtype=torch.long)  # unused: images only
        dataset = PairDataset(self.val, self.built.eval_transform, labels)
        loader = DataLoader(dataset, batch_size=256, num_workers=self.data.workers)
        pixels = (batch for batch, _ in loader)
        return _embed_batches(model.encode_image, pixels, device, dtype)

    def _embed_texts(
        self, model: Any, tokens: torch.Tensor, device: torch.device, dtype: Any
    ) -> np.ndarray:
        return _embed_batches(model.encode_text, torch.split(tokens, 256), device, dtype)

    def _zeroshot(
        self, model: Any, images: np.ndarray, device: torch.device, dtype: Any
    ) -> dict[str, float]:
        assert self.val.labels is not None
        classes = list(self.data.zeroshot_classes) or sorted(set(self.val.labels))
        prompts = zeroshot.prompts(classes, self.data.zeroshot_templates)
        texts = self._embed_texts(model, tokenize(self.built.tokenizer, prompts), device, dtype)
        return zeroshot_accuracy(
            images, class_embeddings(texts, len(classes)), self.val.labels, classes
        )


def _embed_batches(
    encode: Callable[[torch.Tensor], torch.Tensor],
    batches: Iterable[torch.Tensor],
    device: torch.device,
    dtype: Any,
) -> np.ndarray:
    """L2-normalised float32 embeddings of `batches`, in order, on the CPU."""
    chunks = []
    for batch in batches:
        with autocast(dtype, device):
            features = encode(batch.to(device))
        chunks.append(F.normalize(features.float(), dim=-1).cpu())
    return torch.cat(chunks).numpy()
