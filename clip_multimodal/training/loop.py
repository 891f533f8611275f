"""A small, reusable CLIP training loop: AdamW, warmup + cosine schedule, fixed seed.

Built from short pieces (`make_optimizer`, `cosine_lr`, `run_epoch`, `train_epoch`, `train`) so
that tower locking, staged schedules, evaluation callbacks or DDP can be added around them.
Every step is `step.StepRunner`'s and every epoch is `run_epoch`: this small loop, the demo
model's recipe and `clip-multimodal train` (runner.py) share both.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass

import numpy as np
import torch

from clip_multimodal.training.distributed import ContrastiveForward, DistEnv
from clip_multimodal.training.step import StepRunner

__all__ = [
    "PairBatches",
    "TrainConfig",
    "cosine_lr",
    "make_optimizer",
    "run_epoch",
    "seed_everything",
    "train",
    "train_epoch",
    "train_step",
]

BatchTransform = Callable[[torch.Tensor, torch.Generator], torch.Tensor]
EpochCallback = Callable[[int, float], None]
StepCallback = Callable[[int, torch.Tensor, float], None]


@dataclass(frozen=True)
class TrainConfig:
    """Hyper-parameters of one training run (plain data: no argparse Namespace)."""

    epochs: int = 10
    batch_size: int = 128
    lr: float = 1e-3
    weight_decay: float = 0.1
    warmup_steps: int = 50
    betas: tuple[float, float] = (0.9, 0.98)
    eps: float = 1e-6
    grad_clip_norm: float | None = 1.0
    seed: int = 0


def seed_everything(seed: int) -> None:
    """Seed Python, numpy and torch, so a run on the same machine repeats exactly."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def make_optimizer(model: torch.nn.Module, cfg: TrainConfig) -> torch.optim.AdamW:
    """AdamW with no weight decay on norm gains, biases and the temperature.

    This is open_clip's split: decaying them pulls the temperature and the LayerNorm scales
    toward zero, which fights what they do. Frozen parameters (a locked tower) are skipped.
    """
    decay: list[torch.nn.Parameter] = []
    no_decay: list[torch.nn.Parameter] = []
    for name, param in model.named_parameters():
        if not param.requires_grad:
            continue
        exclude = param.ndim < 2 or "bn" in name or "ln" in name or "logit_scale" in name
        (no_decay if exclude else decay).append(param)
    groups = [
        {"params": no_decay, "weight_decay": 0.0},
        {"params": decay, "weight_decay": cfg.weight_decay},
    ]
    return torch.optim.AdamW(groups, lr=cfg.lr, betas=cfg.betas, eps=cfg.eps)


def cosine_lr(step: int, total_steps: int, warmup_steps: int, base_lr: float) -> float:
    """Linear warmup to base_lr, then cosine decay to zero at total_steps."""
    if step < warmup_steps:
        return base_lr * (step + 1) / warmup_steps
    progress = (step - warmup_steps) / max(1, total_steps - warmup_steps)
    return 0.5 * base_lr * (1 + math.cos(math.pi * min(1.0, progress)))


class PairBatches:
    """Shuffled mini-batches over aligned (image, token) tensors.

    Args:
        images: (n, 3, h, w) preprocessed image tensors.
        tokens: (n, context_length) token ids; row i is image i's caption.
        batch_size: rows per batch; the last short batch is dropped, as a contrastive batch
            of one or two pairs teaches nothing.
        transform: an optional function applied to each image batch with the run's random
            generator: augmentation, or normalisation of images stored compactly as uint8.
    """

    def __init__(
        self,
        images: torch.Tensor,
        tokens: torch.Tensor,
        batch_size: int,
        transform: BatchTransform | None = None,
    ) -> None:
        if len(images) != len(tokens):
            raise ValueError(f"{len(images)} images but {len(tokens)} token rows")
        self.images, self.tokens, self.batch_size = images, tokens, batch_size
        self.transform = transform

    def __len__(self) -> int:
        return len(self.images) // self.batch_size

    def epoch(self, generator: torch.Generator) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """Yield one epoch's batches in a fresh random order."""
        order = torch.randperm(len(self.images), generator=generator)
        for b in range(len(self)):
            idx = order[b * self.batch_size : (b + 1) * self.batch_size]
            images = self.images[idx]
            if self.transform is not None:
                images = self.transform(images, generator)
            yield images, self.tokens[idx]


def _plain_step(
    model: torch.nn.Module, optimizer: torch.optim.Optimizer, grad_clip_norm: float | None
) -> StepRunner:
    """The float32, single-process step on the model's own device."""
    env = DistEnv(device=next(model.parameters()).device)
    return StepRunner(ContrastiveForward(model), model, optimizer, env, "fp32", grad_clip_norm)


def train_step(
    model: torch.nn.Module,
    images: torch.Tensor,
    tokens: torch.Tensor,
    optimizer: torch.optim.Optimizer,
    grad_clip_norm: float | None = None,
) -> float:
    """One optimizer step on one batch; returns the batch loss."""
    return float(_plain_step(model, optimizer, grad_clip_norm)(images, tokens).item())


def run_epoch(
    step: StepRunner,
    batches: Iterable[tuple[torch.Tensor, torch.Tensor]],
    lr_at: Callable[[int], float],
    on_step: StepCallback | None = None,
) -> list[torch.Tensor]:
    """Take one step per batch, each at the learning rate `lr_at(i)` of its index in the epoch.

    Returns:
        The batch losses, detached and not synchronized (reading them waits for the device).
    """
    losses: list[torch.Tensor] = []
    for i, (images, tokens) in enumerate(batches):
        lr = lr_at(i)
        for group in step.optimizer.param_groups:
            group["lr"] = lr
        losses.append(step(images, tokens))
        if on_step is not None:
            on_step(i, losses[-1], lr)
    return losses


def train_epoch(
    model: torch.nn.Module,
    batches: PairBatches,
    optimizer: torch.optim.Optimizer,
    cfg: TrainConfig,
    generator: torch.Generator,
    first_step: int,
    total_steps: int,
) -> float:
    """Train over one epoch of `batches`, setting the scheduled learning rate per step.

    Returns:
        The epoch's mean batch loss.
    """
    model.train()
    step = _plain_step(model, optimizer, cfg.grad_clip_norm)

    def lr_at(i: int) -> float:
        return cosine_lr(first_step + i, total_steps, cfg.warmup_steps, cfg.lr)

    losses = [float(loss.item()) for loss in run_epoch(step, batches.epoch(generator), lr_at)]
    return float(np.mean(losses)) if losses else math.nan


def train(
    model: torch.nn.Module,
    batches: PairBatches,
    cfg: TrainConfig,
    on_epoch_end: EpochCallback | None = None,
) -> list[float]:
    """Train `model` for cfg.epochs and return the mean loss of each epoch.

    Args:
        model: an open_clip CLIP model (needs encode_image, encode_text, logit_scale).
        batches: the training pairs.
        cfg: hyper-parameters; cfg.seed fixes initial shuffles and augmentations.
        on_epoch_end: called as on_epoch_end(epoch, mean_loss) after each epoch, e.g. to
            evaluate or log.
    """
    if len(batches) == 0:
        raise ValueError(
            f"no full batch: {len(batches.images)} pairs < batch_size {batches.batch_size}"
        )
    generator = torch.Generator().manual_seed(cfg.seed)
    optimizer = make_optimizer(model, cfg)
    total = cfg.epochs * len(batches)
    losses: list[float] = []
    for epoch in range(cfg.epochs):
        loss = train_epoch(model, batches, optimizer, cfg, generator, epoch * len(batches), total)
        losses.append(loss)
        if on_epoch_end is not None:
            on_epoch_end(epoch, loss)
    model.eval()
    return losses
