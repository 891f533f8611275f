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

import gc
import math
import time
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, Dataset, DistributedSampler

from clip_multimodal import zeroshot
from clip_multimodal.images import load_image
from clip_multimodal.models import DEMO_MODEL, LOCAL_DIR
from clip_multimodal.training.build import BuiltModel, build_model
from clip_multimodal.training.checkpoint import save_local_dir
from clip_multimodal.training.csv_data import PairTable, read_pairs
from clip_multimodal.training.data import tokenize
from clip_multimodal.training.distributed import (
    DistEnv,
    barrier,
    broadcast_object,
    init_distributed,
    mean_across_ranks,
    shutdown,
    wrap_for_training,
)
from clip_multimodal.training.loop import TrainConfig, cosine_lr, make_optimizer, seed_everything
from clip_multimodal.training.metrics import (
    MetricsLog,
    caption_recall,
    class_embeddings,
    zeroshot_accuracy,
)
from clip_multimodal.training.stages import (
    Decision,
    PlateauDetector,
    StagePlan,
    apply_locks,
    decide,
    trainable_parameters,
)
from clip_multimodal.training.step import StepRunner, autocast, resolve_precision
from clip_multimodal.training.train_state import (
    CHECKPOINTS,
    TrainState,
    load_state,
    save_state,
    seed_epoch,
)

__all__ = ["DataConfig", "PairDataset", "RunConfig", "RunResult", "run_training"]


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


class PairDataset(Dataset[tuple[torch.Tensor, torch.Tensor]]):
    """(preprocessed image, caption tokens) for each usable CSV row, images decoded on access
    with the encoder's own loader, so memory stays flat for any dataset size."""

    def __init__(self, table: PairTable, transform: Any, tokens: torch.Tensor) -> None:
        self.paths, self.transform, self.tokens = table.paths, transform, tokens

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        return self.transform(load_image(self.paths[index])), self.tokens[index]


def run_training(cfg: RunConfig, say: Any = print) -> RunResult:
    """Run one training job (this process's part of it under torchrun).

    Args:
        cfg: the run.
        say: where rank 0's log lines go besides OUTPUT/out.log (print by default).
    """
    env = init_distributed(cfg.device)
    try:
        return _Run(cfg, env, say).execute()
    finally:
        shutdown(env)


class _Run:
    def __init__(self, cfg: RunConfig, env: DistEnv, say: Any) -> None:
        self.cfg, self.env, self._say = cfg, env, say
        self.plan = cfg.plan
        self.precision = resolve_precision(cfg.precision, env.device)
        self.out = cfg.output
        self.log_file: Path | None = None
        self.state = TrainState(seed=cfg.seed)
        self.detector: PlateauDetector | None = None
        self.forward: torch.nn.Module | None = None
        self.step: StepRunner | None = None

    # -- logging ------------------------------------------------------------------------------

    def say(self, message: str) -> None:
        if not self.env.is_main:
            return
        self._say(message)
        if self.log_file is not None:
            with self.log_file.open("a", encoding="utf-8") as f:
                f.write(message + "\n")

    # -- set-up -------------------------------------------------------------------------------

    def execute(self) -> RunResult:
        if self.env.is_main:
            self.out.mkdir(parents=True, exist_ok=True)
            self.log_file = self.out / "out.log"
        self.say(
            f"training on {self.env.device} ({self.env.world_size} process(es), "
            f"{self.env.backend or 'no process group'}), precision {self.precision}, output {self.out}"
        )
        tables = self._read_tables() if self.env.is_main else None
        train, val = broadcast_object(tables, self.env) or (None, None)
        assert train is not None
        self._check_batch(len(train))
        opt_state, scaler_state = self._load_resume_state()
        seed_everything(self.cfg.seed)  # the same initial weights on every rank
        built = self._build()
        self.built = built
        self.loader = self._train_loader(train, built)
        self.val = val
        self.val_tokens = self._val_tokens(val) if val is not None else None
        self.metrics = self._metrics_log()
        self._enter_stage(self.state.stage, opt_state, scaler_state)
        if self.env.is_main and val is not None and self.cfg.eval_before and self.state.epoch == 0:
            self._record_before()
        return self._train_epochs()

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

    def _train_loader(self, table: PairTable, built: BuiltModel) -> DataLoader[Any]:
        d = self.cfg.data
        transform = built.train_transform if d.augment else built.eval_transform
        dataset = PairDataset(table, transform, tokenize(built.tokenizer, table.captions))
        # One sampler for one process or many: N ranks with batch B see exactly the batches a
        # single process with batch N x B sees (rank r takes every N-th index of the shuffle).
        self.sampler: DistributedSampler[Any] = DistributedSampler(
            dataset,
            num_replicas=self.env.world_size,
            rank=self.env.rank,
            shuffle=True,
            seed=self.cfg.seed,
            drop_last=True,
        )
        return DataLoader(
            dataset,
            batch_size=self.cfg.batch_size,
            sampler=self.sampler,
            drop_last=True,
            num_workers=d.workers,
            pin_memory=self.env.device.type == "cuda",
        )

    def _val_tokens(self, val: PairTable) -> tuple[list[str], np.ndarray, torch.Tensor]:
        unique, inverse = np.unique(np.asarray(val.captions), return_inverse=True)
        return list(unique), inverse, tokenize(self.built.tokenizer, list(unique))

    def _metrics_log(self) -> MetricsLog | None:
        if not self.env.is_main:
            return None
        run = {
            "model": self.cfg.model if self.cfg.resume is None else str(self.cfg.resume),
            "world_size": self.env.world_size,
            "device": str(self.env.device),
            "precision": self.precision,
            "batch_size": self.cfg.batch_size,
            "global_batch_size": self.cfg.batch_size * self.env.world_size,
            "steps_per_epoch": len(self.loader),
            "plan": {**asdict(self.plan), "locks": asdict(self.plan.locks)},
            "seed": self.cfg.seed,
        }
        tb = self.out / "tensorboard" if self.cfg.tensorboard else None
        path = self.out / "metrics.json"
        if self.cfg.resume is not None:
            previous = self.cfg.resume.parent.parent / "metrics.json"  # OUTPUT/checkpoints/epoch_N
            return MetricsLog.resume(path, run, tb, previous, upto_epoch=self.state.epoch)
        return MetricsLog(path, run, tb)

    # -- stages -------------------------------------------------------------------------------

    def _enter_stage(
        self,
        stage: int,
        opt_state: dict[str, Any] | None = None,
        scaler_state: dict[str, Any] | None = None,
    ) -> None:
        model = self.built.model
        locks = self.plan.locks_for(stage)
        apply_locks(model, locks)
        # A new DDP wrapper registers the new set of trainable parameters; the old one (and its
        # gradient hooks) must be gone first.
        self.forward = self.step = None
        gc.collect()
        self.forward = wrap_for_training(model, self.env)
        lr = self.plan.lr_for(stage)
        train_cfg = TrainConfig(lr=lr, weight_decay=self.cfg.weight_decay)
        optimizer = make_optimizer(model, train_cfg)
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
        trainable, total = trainable_parameters(model)
        self.stage_steps = self.plan.epochs_for(stage) * len(self.loader)
        self.say(
            f"stage {stage}: {locks.describe()}; {trainable:,} of {total:,} parameters "
            f"trainable; peak lr {lr:g}, warmup {self.cfg.warmup} steps, at most "
            f"{self.plan.epochs_for(stage)} epochs of {len(self.loader)} steps"
        )
        if self.cfg.warmup >= self.stage_steps:
            self.say(
                f"note: --warmup {self.cfg.warmup} >= the stage's {self.stage_steps} steps, so the "
                "learning rate never reaches its peak"
            )

    # -- the loop -----------------------------------------------------------------------------

    def _train_epochs(self) -> RunResult:
        while True:
            record = self._train_one_epoch()
            metrics = self._evaluate() if self.env.is_main and self.val is not None else {}
            decision = self._decide(metrics) if self.env.is_main else None
            decision = broadcast_object(decision, self.env)
            assert decision is not None
            record.update(metrics=metrics, decision=decision.as_dict())
            self._after_epoch(record, decision)
            if decision.action == "stop":
                break
            if decision.action == "switch":
                self._switch()
        return self._finish()

    def _set_lr(self, lr: float) -> None:
        assert self.step is not None
        for group in self.step.optimizer.param_groups:
            group["lr"] = lr

    def _train_one_epoch(self) -> dict[str, Any]:
        assert self.step is not None and self.forward is not None
        s = self.state
        s.epoch += 1
        s.stage_epoch += 1
        seed_epoch(self.cfg.seed, s.epoch, self.env.rank)
        self.sampler.set_epoch(s.epoch)
        self.forward.train()
        peak = self.plan.lr_for(s.stage)
        losses: list[torch.Tensor] = []
        start = time.perf_counter()
        lr = 0.0
        for i, (images, tokens) in enumerate(self.loader):
            lr = cosine_lr(s.stage_step, self.stage_steps, self.cfg.warmup, peak)
            self._set_lr(lr)
            losses.append(self.step(images, tokens))
            s.stage_step += 1
            if self.cfg.log_every and (i + 1) % self.cfg.log_every == 0:
                self.say(
                    f"  epoch {s.epoch} step {i + 1}/{len(self.loader)}: "
                    f"loss {float(losses[-1]):.4f}, lr {lr:.3g}"
                )
        if self.env.device.type == "cuda":
            torch.cuda.synchronize(self.env.device)
        elapsed = time.perf_counter() - start
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

    def _decide(self, metrics: dict[str, float]) -> Decision:
        plateaued = False
        if self.detector is not None and "mean_recall" in metrics:
            plateaued = self.detector.update(metrics["mean_recall"])
        return decide(self.plan, self.state.stage, self.state.stage_epoch, plateaued, self.detector)

    def _after_epoch(self, record: dict[str, Any], decision: Decision) -> None:
        """Log, record, and save (rank 0)."""
        if not self.env.is_main:
            return
        self.say(_epoch_line(record))
        assert self.metrics is not None
        self.metrics.add_epoch(record)
        self._maybe_save_best(record.get("metrics", {}))
        s = self.state
        if decision.action != "continue":
            event = "stage_switch" if decision.action == "switch" else "stop"
            self.metrics.add_event(
                {"event": event, "epoch": s.epoch, "stage": s.stage, "reason": decision.reason}
            )
            self.say(
                f"epoch {s.epoch}: {'switching to stage 2' if event == 'stage_switch' else 'stopping'}"
                f": {decision.reason}"
            )
        freq = self.cfg.save_frequency
        if freq > 0 and (s.epoch % freq == 0 or decision.action == "stop"):
            self._save_checkpoint(decision)

    def _maybe_save_best(self, metrics: dict[str, float]) -> None:
        value = metrics.get("mean_recall")
        best = self.state.best_mean_recall
        if value is not None and (best is None or value > best):
            self.state.best_mean_recall = value
            self._save_model(self.out / "best")

    def _save_model(self, folder: Path) -> Path:
        name = self.cfg.model_name or self.out.name
        b = self.built
        return save_local_dir(b.model, b.model_cfg, b.preprocess_cfg, folder, name)

    def _save_checkpoint(self, decision: Decision) -> None:
        """The model and the state a resumed run needs to continue after this epoch."""
        folder = self._save_model(self.out / CHECKPOINTS / f"epoch_{self.state.epoch}")
        state = TrainState(**asdict(self.state))
        optimizer = self.step.optimizer if self.step is not None else None
        scaler = self.step.scaler if self.step is not None else None
        state.detector = self.detector.state_dict() if self.detector is not None else None
        if decision.action == "switch":  # resume straight into stage 2 with a fresh optimizer
            state.stage, state.stage_epoch, state.stage_step = 2, 0, 0
            state.detector, optimizer, scaler = None, None, None
        state.finished = decision.action == "stop"
        save_state(folder, state, optimizer, scaler)

    def _switch(self) -> None:
        s = self.state
        s.stage, s.stage_epoch, s.stage_step, s.detector = 2, 0, 0, None
        self._enter_stage(2)

    def _finish(self) -> RunResult:
        final_dir = self.out / "final"
        best_dir: Path | None = None
        epochs: list[dict[str, Any]] = []
        events: list[dict[str, Any]] = []
        if self.env.is_main:
            self._save_model(final_dir)
            assert self.metrics is not None
            epochs, events = self.metrics.epochs, self.metrics.events
            self.metrics.close()
            best = self.out / "best"
            best_dir = best if best.is_dir() else None
            self.say(f"final model: {final_dir} (use it with --model local-dir:{final_dir})")
            if best_dir is not None:
                self.say(f"best validation mean recall: {best_dir}")
        barrier(self.env)
        return RunResult(self.out, final_dir, best_dir, epochs, events)

    # -- evaluation ---------------------------------------------------------------------------

    def _record_before(self) -> None:
        metrics = self._evaluate()
        record = {"epoch": 0, "stage": 0, "note": "before training", "metrics": metrics}
        assert self.metrics is not None
        self.metrics.add_epoch(record)
        self.say(_epoch_line(record))

    @torch.no_grad()
    def _evaluate(self) -> dict[str, float]:
        assert self.val is not None and self.val_tokens is not None
        model, device = self.built.model, self.env.device
        was_training = model.training
        model.eval()
        dtype = self.step.dtype if self.step is not None else None
        images = self._embed_val_images(model, device, dtype)
        _, inverse, tokens = self.val_tokens
        texts = self._embed_texts(model, tokens, device, dtype)
        metrics = caption_recall(images, texts[inverse], self.val.captions)
        if self.val.labels is not None:
            metrics.update(self._zeroshot(model, images, device, dtype))
        model.train(was_training)
        return metrics

    def _embed_val_images(self, model: Any, device: torch.device, dtype: Any) -> np.ndarray:
        assert self.val is not None and self.val_tokens is not None
        dataset = PairDataset(
            self.val, self.built.eval_transform, torch.zeros(len(self.val), dtype=torch.long)
        )
        loader = DataLoader(dataset, batch_size=256, num_workers=self.cfg.data.workers)
        pixels = (batch for batch, _ in loader)
        return _embed_batches(model.encode_image, pixels, device, dtype)

    def _embed_texts(
        self, model: Any, tokens: torch.Tensor, device: torch.device, dtype: Any
    ) -> np.ndarray:
        return _embed_batches(model.encode_text, torch.split(tokens, 256), device, dtype)

    def _zeroshot(
        self, model: Any, images: np.ndarray, device: torch.device, dtype: Any
    ) -> dict[str, float]:
        assert self.val is not None and self.val.labels is not None
        d = self.cfg.data
        classes = list(d.zeroshot_classes) or sorted(set(self.val.labels))
        prompts = zeroshot.prompts(classes, d.zeroshot_templates)
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


def _epoch_line(record: dict[str, Any]) -> str:
    metrics = record.get("metrics", {})
    shown = [f"{k} {v:.3f}" for k, v in metrics.items() if k.endswith(("R@1", "R@5", "R@10"))]
    extra = [f"{k} {metrics[k]:.3f}" for k in ("mean_recall", "zeroshot_top1") if k in metrics]
    if record["epoch"] == 0:
        return "epoch 0 (before training): " + ", ".join(extra + shown)
    head = (
        f"epoch {record['epoch']} (stage {record['stage']}, epoch {record['stage_epoch']} of it): "
        f"loss {record['loss']:.4f}, lr {record['lr']:.3g}, {record['images_per_s']:.0f} img/s, "
        f"{record['time_s']:.1f} s"
    )
    return "; ".join([head, ", ".join(extra + shown)]) if metrics else head
