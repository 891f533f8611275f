"""CLIP training: the loss, a reusable loop, `local-dir:` checkpoints, retrieval metrics, and
the `clip-multimodal train` run (CSV data, two-stage schedule, DDP).

Names load lazily, so `clip-multimodal train --help` and the CSV checks do not import torch;
the modules themselves import it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from clip_multimodal._lazy import lazy_exports

_EXPORTS = {
    "load_local_dir": "clip_multimodal.training.checkpoint",
    "save_local_dir": "clip_multimodal.training.checkpoint",
    "precision_at_k": "clip_multimodal.training.evaluate",
    "recall_at_k": "clip_multimodal.training.evaluate",
    "PairBatches": "clip_multimodal.training.loop",
    "TrainConfig": "clip_multimodal.training.loop",
    "cosine_lr": "clip_multimodal.training.loop",
    "make_optimizer": "clip_multimodal.training.loop",
    "run_epoch": "clip_multimodal.training.loop",
    "seed_everything": "clip_multimodal.training.loop",
    "train": "clip_multimodal.training.loop",
    "train_epoch": "clip_multimodal.training.loop",
    "train_step": "clip_multimodal.training.loop",
    "MAX_LOGIT_SCALE": "clip_multimodal.training.loss",
    "clamp_logit_scale": "clip_multimodal.training.loss",
    "clip_loss": "clip_multimodal.training.loss",
    "read_pairs": "clip_multimodal.training.csv_data",
    "caption_recall": "clip_multimodal.training.metrics",
    "StagePlan": "clip_multimodal.training.stages",
    "TowerLocks": "clip_multimodal.training.stages",
    "DataConfig": "clip_multimodal.training.config",
    "RunConfig": "clip_multimodal.training.config",
    "RunResult": "clip_multimodal.training.config",
    "run_training": "clip_multimodal.training.runner",
}

__all__ = [
    "MAX_LOGIT_SCALE",
    "DataConfig",
    "PairBatches",
    "RunConfig",
    "RunResult",
    "StagePlan",
    "TowerLocks",
    "TrainConfig",
    "caption_recall",
    "clamp_logit_scale",
    "clip_loss",
    "cosine_lr",
    "load_local_dir",
    "make_optimizer",
    "precision_at_k",
    "read_pairs",
    "recall_at_k",
    "run_epoch",
    "run_training",
    "save_local_dir",
    "seed_everything",
    "train",
    "train_epoch",
    "train_step",
]

if TYPE_CHECKING:
    from clip_multimodal.training.checkpoint import load_local_dir, save_local_dir
    from clip_multimodal.training.config import DataConfig, RunConfig, RunResult
    from clip_multimodal.training.csv_data import read_pairs
    from clip_multimodal.training.evaluate import precision_at_k, recall_at_k
    from clip_multimodal.training.loop import (
        PairBatches,
        TrainConfig,
        cosine_lr,
        make_optimizer,
        run_epoch,
        seed_everything,
        train,
        train_epoch,
        train_step,
    )
    from clip_multimodal.training.loss import MAX_LOGIT_SCALE, clamp_logit_scale, clip_loss
    from clip_multimodal.training.metrics import caption_recall
    from clip_multimodal.training.runner import run_training
    from clip_multimodal.training.stages import StagePlan, TowerLocks

__getattr__, _ = lazy_exports(__name__, _EXPORTS)  # no __dir__: dir() lists the whole module
