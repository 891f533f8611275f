"""The training side of a run: each stage's locks, optimizer and step, and one epoch of steps."""

from __future__ import annotations

import gc
import math
import time
from collections.abc import Callable
from typing import Any

import torch
from torch.utils.data import DataLoader, DistributedSampler

from clip_multimodal.training.build import BuiltModel
from clip_multimodal.training.config import RunConfig
from clip_multimodal.training.distributed import DistEnv, mean_across_ranks, wrap_for_training
from clip_multimodal.training.loop import TrainConfig, cosine_lr, make_optimizer, run_epoch
from clip_multimodal.training.stages import PlateauDetector, apply_locks, trainable_parameters
from clip_multimodal.training.step import StepRunner
from clip_multimodal.training.train_state import TrainState, seed_epoch

__all__ = ["Trainer"]


class Trainer:
    """Trains `built.model` stage by stage on `loader`, keeping `state` (epoch, stage, the
    schedule's step) current. `step` and `detector` belong to the stage being trained."""

    def __init__(
        self,
        cfg: RunConfig,
        env: DistEnv,
        built: BuiltModel,
        loader: DataLoader[Any],
        sampler: DistributedSampler[Any],
        state: TrainState,
        precision: str,
        say: Callable[[str], None],
    ) -> None:
        self.cfg, self.env, self.built, self.state, self.say = cfg, env, built, state, say
        self.loader, self.sampler, self.precision = loader, sampler, precision
        self.plan = cfg.plan
        self.forward: torch.nn.Module | None = None
        self.step: StepRunner | None = None
        self.detector: PlateauDetector | None = None
        self.stage_steps = 0

    @property
    def dtype(self) -> torch.dtype | None:
        """The autocast dtype of the steps (None: float32)."""
        return self.step.dtype if self.step is not None else None

    def enter_stage(
        self,
        stage: int,
        opt_state: dict[str, Any] | None = None,
        scaler_state: dict[str, Any] | None = None,
    ) -> None:
        """Lock the stage's towers and make its optimizer and step (restored when resuming)."""
        model = self.built.model
        locks = self.plan.locks_for(stage)
        apply_locks(model, locks)
        # A new DDP wrapper registers the new set of trainable parameters; the old one (and its
        # gradient hooks) must be gone first.
        self.forward = self.step = None
        gc.collect()
        self.forward = wrap_for_training(model, self.env)
        lr = self.plan.lr_for(stage)
        optimizer = make_optimizer(model, TrainConfig(lr=lr, weight_decay=self.cfg.weight_decay))
        if opt_state is not None:
            optimizer.load_state_dict(opt_state)
        self.step = StepRunner(
            self.forward, model, optimizer, self.env, self.precision, self.cfg.grad_clip_norm
        )
        if scaler_state is not None and self.step.scaler is not None:
            self.step.scaler.load_state_dict(scaler_state)
        self.detector = self.plan.detector()
        if self.detector is not None and self.state.detector is not None:
            self.detector.load_state_dict(self.state.detector)
        self.stage_steps = self.plan.epochs_for(stage) * len(self.loader)
        self._describe_stage(stage, lr)

    def _describe_stage(self, stage: int, lr: float) -> None:
        trainable, total = trainable_parameters(self.built.model)
        epochs, warmup = self.plan.epochs_for(stage), self.cfg.warmup
        self.say(
            f"stage {stage}: {self.plan.locks_for(stage).describe()}; {trainable:,} of {total:,} "
            f"parameters trainable; peak lr {lr:g}, warmup {warmup} steps, at most "
            f"{epochs} epochs of {len(self.loader)} steps"
        )
        if warmup >= self.stage_steps:
            self.say(
                f"note: --warmup {warmup} >= the stage's {self.stage_steps} steps, so the "
                "learning rate never reaches its peak"
            )

    def switch(self) -> None:
        """Into stage 2: its schedule, optimizer and plateau detector start afresh."""
        s = self.state
        s.stage, s.stage_epoch, s.stage_step, s.detector = 2, 0, 0, None
        self.enter_stage(2)

    def train_one_epoch(self) -> dict[str, Any]:
        """One epoch over the loader; its record (loss averaged over every rank)."""
        assert self.step is not None and self.forward is not None
        s = self.state
        s.epoch += 1
        s.stage_epoch += 1
        seed_epoch(self.cfg.seed, s.epoch, self.env.rank)
        self.sampler.set_epoch(s.epoch)
        self.forward.train()
        peak, first = self.plan.lr_for(s.stage), s.stage_step
        last_lr = [0.0]

        def lr_at(i: int) -> float:
            return cosine_lr(first + i, self.stage_steps, self.cfg.warmup, peak)

        def on_step(i: int, loss: torch.Tensor, lr: float) -> None:
            s.stage_step += 1
            last_lr[0] = lr
            if self.cfg.log_every and (i + 1) % self.cfg.log_every == 0:
                self.say(
                    f"  epoch {s.epoch} step {i + 1}/{len(self.loader)}: "
                    f"loss {float(loss):.4f}, lr {lr:.3g}"
                )

        start = time.perf_counter()
        losses = run_epoch(self.step, self.loader, lr_at, on_step)
        if self.env.device.type == "cuda":
            torch.cuda.synchronize(self.env.device)
        return self._record(losses, last_lr[0], time.perf_counter() - start)

    def _record(self, losses: list[torch.Tensor], lr: float, elapsed: float) -> dict[str, Any]:
        s = self.state
        loss = mean_across_ranks(torch.stack(losses).float().mean(), self.env)
        images = len(losses) * self.cfg.batch_size * self.env.world_size
        return {
            "epoch": s.epoch,
            "stage": s.stage,
            "stage_epoch": s.stage_epoch,
            "steps": len(losses),
            "lr": lr,
            "loss": loss,
            "time_s": round(elapsed, 3),
            "images_per_s": round(images / elapsed, 1) if elapsed > 0 else math.nan,
        }
