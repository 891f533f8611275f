"""The typed configuration of a training run, and what it produced (plain data, no argparse)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from clip_multimodal.models import DEMO_MODEL
from clip_multimodal.training.stages import StagePlan

__all__ = ["DataConfig", "RunConfig", "RunResult"]


@dataclass(frozen=True)
class DataConfig:
    """Where the pairs are and how to read them (open_clip's flag names in comments)."""

    train_data: Path  # --train-data
    val_data: Path | None = None  # --val-data
    img_key: str = "filepath"  # --csv-img-key
    caption_key: str = "title"  # --csv-caption-key
    separator: str | None = None  # --csv-separator; None detects tab or comma
    val_label_key: str | None = None  # a column of class labels, for zero-shot accuracy
    zeroshot_classes: tuple[str, ...] = ()  # default: the labels found in the column
    zeroshot_templates: tuple[str, ...] = ("a photo of a {}.",)
    workers: int = 2  # --workers: DataLoader processes (0 loads in the training process)
    augment: bool = True  # open_clip's random resized crop; False trains on the eval transform


@dataclass(frozen=True)
class RunConfig:
    """Everything a run needs, as plain data (no argparse Namespace)."""

    data: DataConfig
    output: Path
    plan: StagePlan = field(default_factory=StagePlan)
    model: str = DEMO_MODEL
    pretrained: str | None = None
    batch_size: int = 64  # per process, as open_clip's --batch-size
    weight_decay: float = 0.1
    warmup: int = 50  # steps, per stage
    precision: str = "auto"
    grad_checkpointing: bool = False
    grad_clip_norm: float | None = 1.0
    seed: int = 0
    device: str = "auto"
    dist_timeout_min: float = 60.0  # every collective's limit under torchrun (rank 0 evaluates)
    save_frequency: int = 1  # save checkpoints/epoch_N every this many epochs; 0: never
    tensorboard: bool = False
    resume: Path | None = None  # a checkpoint folder (OUTPUT/checkpoints/epoch_N)
    log_every: int = 100  # steps between progress lines
    model_name: str | None = None  # recorded in saved configs; default: the output folder name
    eval_before: bool = True  # evaluate the starting model (epoch 0 record)


@dataclass
class RunResult:
    """What a run produced (on rank 0; other ranks get the same paths)."""

    output: Path
    final_dir: Path
    best_dir: Path | None
    epochs: list[dict[str, Any]]
    events: list[dict[str, Any]]
