"""CLIP training: the loss, a reusable loop, `local-dir:` checkpoints, retrieval metrics.

Importing this package imports torch; the light parts of clip_multimodal never import it.
"""

from __future__ import annotations

from clip_multimodal.training.checkpoint import load_local_dir, save_local_dir
from clip_multimodal.training.evaluate import precision_at_k, recall_at_k
from clip_multimodal.training.loop import (
    PairBatches,
    TrainConfig,
    cosine_lr,
    make_optimizer,
    seed_everything,
    train,
    train_epoch,
    train_step,
)
from clip_multimodal.training.loss import MAX_LOGIT_SCALE, clamp_logit_scale, clip_loss

__all__ = [
    "MAX_LOGIT_SCALE",
    "PairBatches",
    "TrainConfig",
    "clamp_logit_scale",
    "clip_loss",
    "cosine_lr",
    "load_local_dir",
    "make_optimizer",
    "precision_at_k",
    "recall_at_k",
    "save_local_dir",
    "seed_everything",
    "train",
    "train_epoch",
    "train_step",
]
