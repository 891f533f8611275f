"""The training run behind `clip-multimodal train`.

Reads and checks the CSVs, builds the model, trains stage by stage with a warmup + cosine
schedule per stage, evaluates every epoch (recall@1/5/10 both ways, zero-shot accuracy),
decides when to switch stages or stop, and writes `local-dir:` checkpoints with a resumable
state beside them. Runs the same on one process or under torchrun.

    OUTPUT/
      out.log                       the log
      metrics.json                  one record per epoch, and the stage events
      checkpoints/epoch_N/          local-dir model + train_state.pt (--save-frequency)
      best/                         the best validation mean recall (with --val-data)
      final/                        the last weights
      tensorboard/                  with --report-to tensorboard
"""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import DataLoader, DistributedSampler

from clip_multimodal.models import LOCAL_DIR
from clip_multimodal.training.build import BuiltModel, build_model
from clip_multimodal.training.config import DataConfig, RunConfig, RunResult
from clip_multimodal.training.csv_data import PairTable, read_pairs
from clip_multimodal.training.data import PairDataset, tokenize
from clip_multimodal.training.distributed import (
    DistEnv,
    barrier,
    broadcast_object,
    init_distributed,
    shutdown,
)
from clip_multimodal.training.evaluator import Evaluator
from clip_multimodal.training.loop import seed_everything
from clip_multimodal.training.run_writer import RunWriter
from clip_multimodal.training.stages import Decision, decide
from clip_multimodal.training.step import resolve_precision
from clip_multimodal.training.train_state import TrainState, load_state
from clip_multimodal.training.trainer import Trainer

__all__ = ["DataConfig", "PairDataset", "RunConfig", "RunResult", "run_training"]


def run_training(cfg: RunConfig, say: Any = print) -> RunResult:
    """Run one training job (this process's part of it under torchrun).

    Args:
        cfg: the run.
        say: where rank 0's log lines go besides OUTPUT/out.log (print by default).
    """
    env = init_distributed(cfg.device, cfg.dist_timeout_min)
    try:
        return _Run(cfg, env, say).execute()
    finally:
        shutdown(env)


class _Run:
    """Sets a run up (data, model, resume state), then trains, evaluates and decides epoch by
    epoch: the Trainer steps, the Evaluator scores, the RunWriter logs and saves."""

    def __init__(self, cfg: RunConfig, env: DistEnv, say: Any) -> None:
        self.cfg, self.env = cfg, env
        self.precision = resolve_precision(cfg.precision, env.device)
        self.writer = RunWriter(cfg, env, say)
        self.say = self.writer.say
        self.state = TrainState(seed=cfg.seed)

    def execute(self) -> RunResult:
        group = self.env.backend or "no process group"
        if self.env.timeout_min is not None:
            group += f", collectives time out after {self.env.timeout_min:g} min"
        self.say(
            f"training on {self.env.device} ({self.env.world_size} process(es), {group}), "
            f"precision {self.precision}, output {self.cfg.output}"
        )
        tables = self._read_tables() if self.env.is_main else None
        train, val = broadcast_object(tables, self.env) or (None, None)
        assert train is not None
        self._check_batch(len(train))
        opt_state, scaler_state = self._load_resume_state()
        seed_everything(self.cfg.seed)  # the same initial weights on every rank
        self.built = self._build()
        loader, sampler = self._train_loader(train, self.built)
        self.trainer = Trainer(
            self.cfg, self.env, self.built, loader, sampler, self.state, self.precision, self.say
        )
        self.evaluator = Evaluator(self.cfg.data, val, self.built) if val is not None else None
        self.writer.open_metrics(self._run_record(len(loader)), upto_epoch=self.state.epoch)
        self.trainer.enter_stage(self.state.stage, opt_state, scaler_state)
        if self.env.is_main and val is not None and self.cfg.eval_before and self.state.epoch == 0:
            self.writer.record_before(self._evaluate())
        barrier(self.env)  # the other ranks wait here (the group's timeout) while rank 0 scores
        return self._train_epochs()

    # -- set-up -------------------------------------------------------------------------------

    def _read_tables(self) -> tuple[PairTable, PairTable | None]:
        d = self.cfg.data
        train = self._read_table(d.train_data, None)
        val = self._read_table(d.val_data, d.val_label_key) if d.val_data else None
        return train, val

    def _read_table(self, path: Path, label_key: str | None) -> PairTable:
        d = self.cfg.data
        table = read_pairs(
            path, d.img_key, d.caption_key, d.separator, label_key, max(1, d.workers)
        )
        for line in table.report():
            self.say(line)
        if len(table) == 0:
            raise ValueError(f"{path}: no usable rows (see the skipped rows above)")
        if table.labels is not None and d.zeroshot_classes:
            unknown = sorted(set(table.labels) - set(d.zeroshot_classes))
            if unknown:
                raise ValueError(
                    f"{path}: labels in {label_key!r} missing from --zeroshot-classes: "
                    f"{', '.join(unknown[:5])}"
                )
        return table

    def _check_batch(self, n: int) -> None:
        global_batch = self.cfg.batch_size * self.env.world_size
        if n < global_batch:
            raise ValueError(
                f"{n} training pairs cannot fill one batch of {global_batch} "
                f"({self.cfg.batch_size} x {self.env.world_size} process(es)); lower --batch-size"
            )

    def _load_resume_state(self) -> tuple[dict[str, Any] | None, dict[str, Any] | None]:
        if self.cfg.resume is None:
            return None, None
        state, opt_state, scaler_state = load_state(self.cfg.resume)
        if state.finished:
            raise ValueError(
                f"the run in {self.cfg.resume} had finished at epoch {state.epoch}; to train "
                f"further start a new run from it: --model local-dir:{self.cfg.resume}"
            )
        self.state = state
        self.say(
            f"resuming from {self.cfg.resume}: epoch {state.epoch} done, stage {state.stage} "
            f"({state.stage_epoch} epoch(s) into it)"
        )
        return opt_state, scaler_state

    def _build(self) -> BuiltModel:
        spec = f"{LOCAL_DIR}{self.cfg.resume}" if self.cfg.resume else self.cfg.model
        built = build_model(spec, self.cfg.pretrained)
        self.say(f"model {built.description}")
        built.model.to(self.env.device)
        if self.cfg.grad_checkpointing:
            built.model.set_grad_checkpointing(True)
        if self.env.device.type == "cuda":
            torch.backends.cuda.matmul.allow_tf32 = True
            torch.backends.cudnn.allow_tf32 = True
        return built

    def _train_loader(
        self, table: PairTable, built: BuiltModel
    ) -> tuple[DataLoader[Any], DistributedSampler[Any]]:
        d = self.cfg.data
        transform = built.train_transform if d.augment else built.eval_transform
        dataset = PairDataset(table, transform, tokenize(built.tokenizer, table.captions))
        # One sampler for one process or many: N ranks with batch B see exactly the batches a
        # single process with batch N x B sees (rank r takes every N-th index of the shuffle).
        sampler: DistributedSampler[Any] = DistributedSampler(
            dataset,
            num_replicas=self.env.world_size,
            rank=self.env.rank,
            shuffle=True,
            seed=self.cfg.seed,
            drop_last=True,
        )
        loader = DataLoader(
            dataset,
            batch_size=self.cfg.batch_size,
            sampler=sampler,
            drop_last=True,
            num_workers=d.workers,
            pin_memory=self.env.device.type == "cuda",
        )
        return loader, sampler

    def _run_record(self, steps_per_epoch: int) -> dict[str, Any]:
        plan = self.cfg.plan
        return {
            "model": self.cfg.model if self.cfg.resume is None else str(self.cfg.resume),
            "world_size": self.env.world_size,
            "device": str(self.env.device),
            "precision": self.precision,
            "batch_size": self.cfg.batch_size,
            "global_batch_size": self.cfg.batch_size * self.env.world_size,
            "steps_per_epoch": steps_per_epoch,
            "plan": {**asdict(plan), "locks": asdict(plan.locks)},
            "seed": self.cfg.seed,
        }

    # -- the loop -----------------------------------------------------------------------------

    def _train_epochs(self) -> RunResult:
        trainer = self.trainer
        while True:
            record = trainer.train_one_epoch()
            scored = self.env.is_main and self.evaluator is not None
            metrics = self._evaluate() if scored else {}
            decision = self._decide(metrics) if self.env.is_main else None
            decision = broadcast_object(decision, self.env)
            assert decision is not None
            record.update(metrics=metrics, decision=decision.as_dict())
            self.writer.after_epoch(
                record, decision, self.state, self.built, trainer.step, trainer.detector
            )
            barrier(self.env)  # the other ranks wait here while rank 0 logs and saves
            if decision.action == "stop":
                break
            if decision.action == "switch":
                trainer.switch()
        return self.writer.finish(self.built)

    def _evaluate(self) -> dict[str, float]:
        assert self.evaluator is not None
        return self.evaluator.evaluate(self.env.device, self.trainer.dtype)

    def _decide(self, metrics: dict[str, float]) -> Decision:
        detector = self.trainer.detector
        plateaued = False
        if detector is not None and "mean_recall" in metrics:
            plateaued = detector.update(metrics["mean_recall"])
        return decide(self.cfg.plan, self.state.stage, self.state.stage_epoch, plateaued, detector)
