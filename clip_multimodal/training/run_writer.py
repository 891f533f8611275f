"""What a run writes (rank 0): out.log, metrics.json, best/, checkpoints/epoch_N/ and final/."""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path
from typing import Any

from clip_multimodal.training.build import BuiltModel
from clip_multimodal.training.checkpoint import save_local_dir
from clip_multimodal.training.config import RunConfig, RunResult
from clip_multimodal.training.distributed import DistEnv, barrier
from clip_multimodal.training.metrics import MetricsLog
from clip_multimodal.training.stages import Decision
from clip_multimodal.training.step import StepRunner
from clip_multimodal.training.train_state import CHECKPOINTS, TrainState, save_state

__all__ = ["RunWriter", "epoch_line"]


class RunWriter:
    """The run's log, records and saved models. Other ranks only log nothing and wait."""

    def __init__(self, cfg: RunConfig, env: DistEnv, say: Any) -> None:
        self.cfg, self.env, self._say = cfg, env, say
        self.out = cfg.output
        self.log_file: Path | None = None
        self.metrics: MetricsLog | None = None
        if env.is_main:
            self.out.mkdir(parents=True, exist_ok=True)
            self.log_file = self.out / "out.log"

    def say(self, message: str) -> None:
        if not self.env.is_main:
            return
        self._say(message)
        if self.log_file is not None:
            with self.log_file.open("a", encoding="utf-8") as f:
                f.write(message + "\n")

    def open_metrics(self, run: dict[str, Any], upto_epoch: int) -> None:
        """Start metrics.json with the run's settings (a resumed run keeps its earlier records)."""
        if not self.env.is_main:
            return
        tb = self.out / "tensorboard" if self.cfg.tensorboard else None
        path = self.out / "metrics.json"
        if self.cfg.resume is not None:
            previous = self.cfg.resume.parent.parent / "metrics.json"  # OUTPUT/checkpoints/epoch_N
            self.metrics = MetricsLog.resume(path, run, tb, previous, upto_epoch=upto_epoch)
        else:
            self.metrics = MetricsLog(path, run, tb)

    def record_before(self, metrics: dict[str, float]) -> None:
        """The starting model's scores, as epoch 0."""
        record = {"epoch": 0, "stage": 0, "note": "before training", "metrics": metrics}
        assert self.metrics is not None
        self.metrics.add_epoch(record)
        self.say(epoch_line(record))

    def after_epoch(
        self,
        record: dict[str, Any],
        decision: Decision,
        state: TrainState,
        built: BuiltModel,
        step: StepRunner | None,
        detector: Any,
    ) -> None:
        """Log, record, and save (rank 0)."""
        if not self.env.is_main:
            return
        self.say(epoch_line(record))
        assert self.metrics is not None
        self.metrics.add_epoch(record)
        self._maybe_save_best(record.get("metrics", {}), state, built)
        if decision.action != "continue":
            event = "stage_switch" if decision.action == "switch" else "stop"
            self.metrics.add_event(
                {
                    "event": event,
                    "epoch": state.epoch,
                    "stage": state.stage,
                    "reason": decision.reason,
                }
            )
            what = "switching to stage 2" if event == "stage_switch" else "stopping"
            self.say(f"epoch {state.epoch}: {what}: {decision.reason}")
        freq = self.cfg.save_frequency
        if freq > 0 and (state.epoch % freq == 0 or decision.action == "stop"):
            self._save_checkpoint(decision, state, built, step, detector)

    def _maybe_save_best(
        self, metrics: dict[str, float], state: TrainState, built: BuiltModel
    ) -> None:
        value = metrics.get("mean_recall")
        best = state.best_mean_recall
        if value is not None and (best is None or value > best):
            state.best_mean_recall = value
            self._save_model(built, self.out / "best")

    def _save_model(self, built: BuiltModel, folder: Path) -> Path:
        name = self.cfg.model_name or self.out.name
        return save_local_dir(built.model, built.model_cfg, built.preprocess_cfg, folder, name)

    def _save_checkpoint(
        self,
        decision: Decision,
        current: TrainState,
        built: BuiltModel,
        step: StepRunner | None,
        detector: Any,
    ) -> None:
        """The model and the state a resumed run needs to continue after this epoch."""
        folder = self._save_model(built, self.out / CHECKPOINTS / f"epoch_{current.epoch}")
        state = TrainState(**asdict(current))
        optimizer = step.optimizer if step is not None else None
        scaler = step.scaler if step is not None else None
        state.detector = detector.state_dict() if detector is not None else None
        if decision.action == "switch":  # resume straight into stage 2 with a fresh optimizer
            state.stage, state.stage_epoch, state.stage_step = 2, 0, 0
            state.detector, optimizer, scaler = None, None, None
        state.finished = decision.action == "stop"
        save_state(folder, state, optimizer, scaler)

    def finish(self, built: BuiltModel) -> RunResult:
        """Save final/, close the records, and wait for every rank."""
        final_dir = self.out / "final"
        best_dir: Path | None = None
        epochs: list[dict[str, Any]] = []
        events: list[dict[str, Any]] = []
        if self.env.is_main:
            self._save_model(built, final_dir)
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


def epoch_line(record: dict[str, Any]) -> str:
    """One epoch's record as a log line."""
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
