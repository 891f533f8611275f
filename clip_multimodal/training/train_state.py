"""Resumable training state, kept beside each epoch's `local-dir:` model.

`OUTPUT/checkpoints/epoch_N/` holds the model (open_clip_config.json + safetensors, which the
encoder loads unchanged) and `train_state.pt`: the optimizer and gradient scaler, the epoch, the
stage and its progress, the plateau detector and the seed. open_clip ignores `.pt` files when
it looks for weights in a folder, so the state never shadows the model.

Random streams are reseeded at the start of every epoch from (seed, epoch, rank), so a resumed
run draws the same batches and augmentations as an uninterrupted one without storing them.
"""

from __future__ import annotations

import random
import re
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

__all__ = [
    "STATE_FILE",
    "TrainState",
    "find_latest_checkpoint",
    "load_state",
    "save_state",
    "seed_epoch",
]

STATE_FILE = "train_state.pt"
CHECKPOINTS = "checkpoints"
_EPOCH_DIR = re.compile(r"^epoch_(\d+)$")


@dataclass
class TrainState:
    """Where a run stands after an epoch, with the decision taken already applied.

    Attributes:
        epoch: epochs completed in the whole run.
        stage: the stage the next epoch trains in (1 or 2).
        stage_epoch: epochs completed in that stage.
        stage_step: optimizer steps taken in that stage (the learning-rate schedule's clock).
        seed: the run's seed.
        best_mean_recall: the best validation mean recall so far (None without validation).
        detector: the stage's plateau detector state, or None.
        finished: the run had stopped.
    """

    epoch: int = 0
    stage: int = 1
    stage_epoch: int = 0
    stage_step: int = 0
    seed: int = 0
    best_mean_recall: float | None = None
    detector: dict[str, Any] | None = None
    finished: bool = False


def save_state(
    folder: Path,
    state: TrainState,
    optimizer: torch.optim.Optimizer | None,
    scaler: torch.amp.GradScaler | None,
) -> Path:
    """Write `folder/train_state.pt`. Without an optimizer (a stage just switched), the next
    stage starts a fresh one on resume."""
    payload = {
        "state": asdict(state),
        "optimizer": optimizer.state_dict() if optimizer is not None else None,
        "scaler": scaler.state_dict() if scaler is not None else None,
    }
    path = folder / STATE_FILE
    tmp = path.with_suffix(".tmp")
    torch.save(payload, tmp)
    tmp.replace(path)
    return path


def load_state(folder: Path) -> tuple[TrainState, dict[str, Any] | None, dict[str, Any] | None]:
    """(state, optimizer state dict or None, scaler state dict or None) from a checkpoint."""
    path = folder / STATE_FILE
    if not path.is_file():
        raise FileNotFoundError(
            f"{folder} has no {STATE_FILE}: resume from a checkpoint folder written by "
            "`clip-multimodal train` (OUTPUT/checkpoints/epoch_N) or use --resume latest"
        )
    payload = torch.load(path, map_location="cpu", weights_only=True)
    return TrainState(**payload["state"]), payload["optimizer"], payload["scaler"]


def find_latest_checkpoint(output: Path) -> Path | None:
    """The newest `output/checkpoints/epoch_N` folder holding a training state."""
    folder = output / CHECKPOINTS
    found: list[tuple[int, Path]] = []
    if folder.is_dir():
        for child in folder.iterdir():
            match = _EPOCH_DIR.match(child.name)
            if match and (child / STATE_FILE).is_file():
                found.append((int(match.group(1)), child))
    return max(found)[1] if found else None


def seed_epoch(seed: int, epoch: int, rank: int) -> None:
    """Seed Python, numpy and torch for one epoch of one rank (augmentations, workers)."""
    value = (seed * 1_000_003 + epoch * 1009 + rank) % (2**31)
    random.seed(value)
    np.random.seed(value)
    torch.manual_seed(value)
