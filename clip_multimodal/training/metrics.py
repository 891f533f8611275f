"""Validation during training: retrieval recall, zero-shot accuracy, and the metrics file.

Recall treats identical captions as one text, as retrieval benchmarks with several captions
per image do: an image's caption is found if any copy of that text ranks in the top k, and a
caption's images are found if any image bearing it does. With unique captions this is exactly
`evaluate.recall_at_k`.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from clip_multimodal.training.evaluate import top_k
from clip_multimodal.zeroshot import class_means as class_embeddings  # the encoder's own

__all__ = [
    "RECALL_KS",
    "MetricsLog",
    "caption_recall",
    "class_embeddings",
    "zeroshot_accuracy",
]

RECALL_KS = (1, 5, 10)


def caption_recall(
    image_emb: np.ndarray,
    text_emb: np.ndarray,
    captions: Sequence[str],
    ks: Sequence[int] = RECALL_KS,
) -> dict[str, float]:
    """Image->text and text->image recall@k of paired rows, with duplicate captions merged.

    Args:
        image_emb: (n, d) normalized image embeddings.
        text_emb: (n, d) normalized caption embeddings; row i is image i's caption.
        captions: the n caption strings (equal strings are one text).
        ks: the cut-offs.

    Returns:
        {"i2t_R@1": ..., "t2i_R@1": ..., ..., "mean_recall": the mean of all of them}.
    """
    n = len(image_emb)
    if len(text_emb) != n or len(captions) != n:
        raise ValueError(f"{n} images, {len(text_emb)} text rows, {len(captions)} captions")
    _, first, group = np.unique(np.asarray(captions), return_index=True, return_inverse=True)
    texts = np.asarray(text_emb)[first]
    out: dict[str, float] = {}
    top_texts = top_k(image_emb, texts, max(ks))
    for k in ks:
        out[f"i2t_R@{k}"] = float((top_texts[:, :k] == group[:, None]).any(axis=1).mean())
    top_images = group[top_k(texts, image_emb, max(ks))]  # caption group of each hit
    own = np.arange(len(texts))[:, None]
    for k in ks:
        out[f"t2i_R@{k}"] = float((top_images[:, :k] == own).any(axis=1).mean())
    out["mean_recall"] = float(np.mean(list(out.values())))
    return out


def zeroshot_accuracy(
    image_emb: np.ndarray,
    class_emb: np.ndarray,
    labels: Sequence[str],
    classes: Sequence[str],
) -> dict[str, float]:
    """Top-1 (and top-5, with more than 5 classes) zero-shot accuracy.

    Raises:
        ValueError: a label is not among `classes`.
    """
    index = {c: i for i, c in enumerate(classes)}
    unknown = sorted({lab for lab in labels if lab not in index})
    if unknown:
        raise ValueError(f"labels not among the zero-shot classes: {', '.join(unknown[:5])}")
    target = np.array([index[lab] for lab in labels])
    top = top_k(image_emb, class_emb, 5)
    out = {"zeroshot_top1": float((top[:, 0] == target).mean())}
    if len(classes) > 5:
        out["zeroshot_top5"] = float((top == target[:, None]).any(axis=1).mean())
    return out


class MetricsLog:
    """`metrics.json`: one record per epoch, the stage events, and the run's settings.

    The file is rewritten atomically after every epoch, so it is always valid JSON. With
    `tensorboard_dir`, the same numbers go to TensorBoard.
    """

    def __init__(
        self, path: Path, run: dict[str, Any], tensorboard_dir: Path | None = None
    ) -> None:
        self.path = path
        self.data: dict[str, Any] = {"run": run, "epochs": [], "events": []}
        self.writer: Any = None
        if tensorboard_dir is not None:
            from clip_multimodal.errors import require

            require("tensorboard", "train", "--report-to tensorboard")
            from torch.utils.tensorboard import SummaryWriter

            self.writer = SummaryWriter(str(tensorboard_dir))

    @classmethod
    def resume(
        cls,
        path: Path,
        run: dict[str, Any],
        tensorboard_dir: Path | None,
        previous: Path,
        upto_epoch: int,
    ) -> MetricsLog:
        """Continue the records of a previous run's file (`previous`, possibly `path` itself)
        up to `upto_epoch`; later ones belong to the interrupted part and are replaced."""
        log = cls(path, run, tensorboard_dir)
        if previous.is_file():
            old = json.loads(previous.read_text(encoding="utf-8"))
            log.data["epochs"] = [r for r in old.get("epochs", []) if r["epoch"] <= upto_epoch]
            log.data["events"] = [e for e in old.get("events", []) if e["epoch"] <= upto_epoch]
        return log

    @property
    def epochs(self) -> list[dict[str, Any]]:
        records: list[dict[str, Any]] = self.data["epochs"]
        return records

    @property
    def events(self) -> list[dict[str, Any]]:
        events: list[dict[str, Any]] = self.data["events"]
        return events

    def add_epoch(self, record: dict[str, Any]) -> None:
        self.epochs.append(record)
        if self.writer is not None:
            epoch = record["epoch"]
            for key in ("loss", "lr", "images_per_s", "stage"):
                if record.get(key) is not None:
                    self.writer.add_scalar(f"train/{key}", record[key], epoch)
            for key, value in record.get("metrics", {}).items():
                self.writer.add_scalar(f"val/{key}", value, epoch)
            self.writer.flush()
        self.write()

    def add_event(self, event: dict[str, Any]) -> None:
        self.events.append(event)
        if self.writer is not None:
            self.writer.add_text("events", json.dumps(event), event["epoch"])
        self.write()

    def write(self) -> None:
        tmp = self.path.with_suffix(".json.tmp")
        tmp.write_text(json.dumps(self.data, indent=2) + "\n", encoding="utf-8")
        os.replace(tmp, self.path)

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
