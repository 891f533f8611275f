"""Tower locking (LiT) and Chinese-CLIP's two-stage schedule.

Stage 1 locks one tower (by default the image tower, as LiT and Chinese-CLIP do) so the other
learns to match its embeddings; when validation recall stops improving, stage 2 unlocks every
parameter and continues contrastive tuning with its own learning rate until recall plateaus again.
A plateau is `patience` evaluations in a row that fail to beat the stage's best by more than
`min_delta`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

import torch

__all__ = [
    "Decision",
    "PlateauDetector",
    "StagePlan",
    "TowerLocks",
    "apply_locks",
    "decide",
    "trainable_parameters",
    "unlock_all",
]


@dataclass(frozen=True)
class TowerLocks:
    """Which towers are frozen, and how much of each stays trainable.

    Attributes:
        image: lock the image tower (open_clip's `lock_image_tower`).
        text: lock the text tower (open_clip's `lock_text_tower`).
        image_unlocked_groups: leave this many last layer groups of the image tower trainable.
        text_unlocked_layers: leave this many last layer groups of the text tower trainable.
        freeze_bn_stats: also freeze BatchNorm running statistics of a locked image tower
            (ResNet towers; irreversible, so they stay frozen in stage 2).
    """

    image: bool = False
    text: bool = False
    image_unlocked_groups: int = 0
    text_unlocked_layers: int = 0
    freeze_bn_stats: bool = False

    def describe(self) -> str:
        parts = []
        if self.image:
            extra = f", last {self.image_unlocked_groups} groups trainable"
            parts.append(f"image tower locked{extra if self.image_unlocked_groups else ''}")
        if self.text:
            extra = f", last {self.text_unlocked_layers} layers trainable"
            parts.append(f"text tower locked{extra if self.text_unlocked_layers else ''}")
        return "; ".join(parts) or "all towers trainable"


def unlock_all(model: torch.nn.Module) -> None:
    """Make every parameter trainable again (stage 2)."""
    for param in model.parameters():
        param.requires_grad_(True)


def apply_locks(model: Any, locks: TowerLocks) -> None:
    """Unlock everything, then lock the towers `locks` names with open_clip's own methods."""
    unlock_all(model)
    if locks.image:
        model.lock_image_tower(
            unlocked_groups=locks.image_unlocked_groups, freeze_bn_stats=locks.freeze_bn_stats
        )
    if locks.text:
        model.lock_text_tower(unlocked_layers=locks.text_unlocked_layers)


def trainable_parameters(model: torch.nn.Module) -> tuple[int, int]:
    """(trainable, total) parameter counts."""
    total = trainable = 0
    for param in model.parameters():
        total += param.numel()
        trainable += param.numel() if param.requires_grad else 0
    return trainable, total


@dataclass
class PlateauDetector:
    """Counts evaluations that fail to improve on the best by more than `min_delta`."""

    patience: int
    min_delta: float = 0.0
    best: float | None = None
    bad_evals: int = 0

    def update(self, value: float) -> bool:
        """Record one evaluation; True once `patience` evaluations in a row did not improve."""
        if self.best is None or value > self.best + self.min_delta:
            self.best = value
            self.bad_evals = 0
        else:
            self.bad_evals += 1
        return self.bad_evals >= self.patience

    def reset(self) -> None:
        self.best, self.bad_evals = None, 0

    def state_dict(self) -> dict[str, Any]:
        return {"best": self.best, "bad_evals": self.bad_evals}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.best, self.bad_evals = state["best"], int(state["bad_evals"])


@dataclass(frozen=True)
class StagePlan:
    """The schedule of a run: one stage, or Chinese-CLIP's two.

    Attributes:
        two_stage: run stage 2 (everything unlocked) after stage 1 plateaus.
        locks: the towers locked in stage 1 (or in the only stage).
        epochs: the most epochs of stage 1 (or of the only stage).
        stage2_epochs: the most epochs of stage 2.
        lr: stage 1's peak learning rate.
        stage2_lr: stage 2's peak learning rate (a fresh optimizer and warmup).
        patience: evaluations without improvement that end a stage; None never ends early.
        min_delta: the improvement in mean recall that counts.
    """

    two_stage: bool = False
    locks: TowerLocks = field(default_factory=TowerLocks)
    epochs: int = 10
    stage2_epochs: int = 10
    lr: float = 5e-4
    stage2_lr: float = 5e-5
    patience: int | None = None
    min_delta: float = 0.0

    def locks_for(self, stage: int) -> TowerLocks:
        return self.locks if stage == 1 else TowerLocks()

    def lr_for(self, stage: int) -> float:
        return self.lr if stage == 1 else self.stage2_lr

    def epochs_for(self, stage: int) -> int:
        return self.epochs if stage == 1 else self.stage2_epochs

    def detector(self) -> PlateauDetector | None:
        return None if self.patience is None else PlateauDetector(self.patience, self.min_delta)


Action = Literal["continue", "switch", "stop"]


@dataclass(frozen=True)
class Decision:
    """What to do after an epoch, and why (recorded in the log and metrics.json)."""

    action: Action
    reason: str = ""

    def as_dict(self) -> dict[str, str]:
        return {"action": self.action, "reason": self.reason}


def decide(
    plan: StagePlan,
    stage: int,
    stage_epoch: int,
    plateaued: bool,
    detector: PlateauDetector | None,
) -> Decision:
    """Continue, switch to stage 2, or stop, after `stage_epoch` epochs of `stage`.

    Args:
        plan: the schedule.
        stage: 1 or 2.
        stage_epoch: epochs done in this stage (1 after its first epoch).
        plateaued: the detector's verdict on this epoch's evaluation (False without one).
        detector: the stage's plateau detector, for the reason's numbers.
    """
    ending: Action = "switch" if plan.two_stage and stage == 1 else "stop"
    if plateaued and detector is not None:
        return Decision(
            ending,
            f"validation mean recall did not improve by more than {detector.min_delta:g} for "
            f"{detector.patience} evaluation(s) (stage {stage} best {detector.best:.4f})",
        )
    if stage_epoch >= plan.epochs_for(stage):
        flag = "--epochs" if stage == 1 else "--stage2-max-epochs"
        return Decision(
            ending, f"stage {stage} reached its {plan.epochs_for(stage)} epochs ({flag})"
        )
    return Decision("continue")
