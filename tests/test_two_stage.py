"""Tower locking and Chinese-CLIP's two-stage schedule: the rules, then real runs of the command
on a tiny model (which weights move in which stage, when and why the switch happens)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import open_clip
import pytest
import torch

from clip_multimodal.cli import main
from clip_multimodal.training import TrainConfig, make_optimizer
from clip_multimodal.training.stages import (
    PlateauDetector,
    StagePlan,
    TowerLocks,
    apply_locks,
    decide,
    trainable_parameters,
    unlock_all,
)
from clip_multimodal.training.train_state import load_state
from tests.training_helpers import (
    TINY_CFG,
    max_diff,
    one_thread_per_test,  # noqa: F401 (an autouse fixture: imported, it applies here)
    state_dict,
    tiny_model_dir,
    write_shapes_csv,
)


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("two-stage")
    return {
        "model": tiny_model_dir(root / "model"),
        "train": write_shapes_csv(root, "train.csv", 48, seed=0),
        "val": write_shapes_csv(root, "val.csv", 24, seed=1),
    }


def _run(data: dict[str, Path], out: Path, *extra: str) -> list[str]:
    argv = ["train", "--model", f"local-dir:{data['model']}", "--train-data", str(data["train"])]
    argv += ["--val-data", str(data["val"]), "--batch-size", "8", "--workers", "0"]
    argv += ["--warmup", "1", "--lr", "1e-3", "--output", str(out), "--log-every-n-steps", "0"]
    return [*argv, *extra]


# -- the rules ------------------------------------------------------------------------------


def test_plateau_needs_patience_evaluations_without_enough_improvement() -> None:
    detector = PlateauDetector(patience=2, min_delta=0.05)
    assert not detector.update(0.50)  # the first evaluation sets the best
    assert not detector.update(0.54)  # +0.04 is not more than 0.05: one bad evaluation
    assert not detector.update(0.60)  # +0.10: improvement, count reset
    assert detector.best == 0.60
    assert not detector.update(0.61)
    assert detector.update(0.59)  # two in a row
    restored = PlateauDetector(2, 0.05)
    restored.load_state_dict(detector.state_dict())
    assert (restored.best, restored.bad_evals) == (0.60, 2)


def test_decisions_switch_in_stage_one_and_stop_in_stage_two() -> None:
    plan = StagePlan(two_stage=True, epochs=5, stage2_epochs=3, patience=1, min_delta=0.01)
    det = PlateauDetector(1, 0.01, best=0.8, bad_evals=1)
    switch = decide(plan, 1, 2, True, det)
    assert switch.action == "switch"
    assert "did not improve by more than 0.01 for 1 evaluation(s)" in switch.reason
    assert "stage 1 best 0.8000" in switch.reason
    assert decide(plan, 1, 2, False, det).action == "continue"
    assert decide(plan, 1, 5, False, det).reason == "stage 1 reached its 5 epochs (--epochs)"
    assert decide(plan, 2, 1, True, det).action == "stop"
    last = decide(plan, 2, 3, False, det)
    assert (last.action, last.reason) == (
        "stop",
        "stage 2 reached its 3 epochs (--stage2-max-epochs)",
    )
    single = StagePlan(epochs=2)
    assert decide(single, 1, 1, False, None).action == "continue"
    assert decide(single, 1, 2, False, None).action == "stop"


def _trainable(model: Any) -> set[str]:
    return {name for name, p in model.named_parameters() if p.requires_grad}


def test_locks_use_open_clips_groups_and_keep_the_temperature_trainable() -> None:
    model = open_clip.CLIP(**TINY_CFG)
    everything = _trainable(model)
    visual = {n for n in everything if n.startswith("visual.")}
    apply_locks(model, TowerLocks(image=True))
    assert _trainable(model) == everything - visual
    assert "logit_scale" in _trainable(model)
    apply_locks(model, TowerLocks(image=True, image_unlocked_groups=1))
    assert _trainable(model) & visual == {"visual.proj"}
    apply_locks(model, TowerLocks(image=True, image_unlocked_groups=2))
    last = {
        n for n in visual if n.startswith(("visual.transformer.resblocks.1.", "visual.ln_post"))
    }
    assert _trainable(model) & visual == last | {"visual.proj"}
    apply_locks(model, TowerLocks(text=True, text_unlocked_layers=1))
    assert _trainable(model) == visual | {"logit_scale", "text_projection"}
    unlock_all(model)
    assert _trainable(model) == everything
    apply_locks(model, TowerLocks(image=True))
    trainable, total = trainable_parameters(model)
    assert trainable == total - sum(p.numel() for p in model.visual.parameters())
    optimizer = make_optimizer(model, TrainConfig())
    in_optimizer = {id(p) for g in optimizer.param_groups for p in g["params"]}
    assert not in_optimizer & {id(p) for p in model.visual.parameters()}


# -- real runs ------------------------------------------------------------------------------


def test_two_stage_run_switches_on_plateau_and_moves_the_image_tower_only_in_stage_two(
    data: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "run"
    argv = _run(data, out, "--two-stage", "--epochs", "3", "--patience", "1")
    argv += ["--min-delta", "1", "--stage2-max-epochs", "3", "--stage2-lr", "3e-4"]
    assert main(argv) == 0
    log = capsys.readouterr().out
    assert "stage 1: image tower locked" in log
    assert "epoch 2: switching to stage 2: validation mean recall did not improve by more" in log

    import json

    metrics = json.loads((out / "metrics.json").read_text())
    assert [(r["epoch"], r["stage"]) for r in metrics["epochs"]] == [
        (0, 0), (1, 1), (2, 1), (3, 2), (4, 2)
    ]  # fmt: skip
    switch, stop = metrics["events"]
    assert (switch["event"], switch["epoch"], switch["stage"]) == ("stage_switch", 2, 1)
    assert "for 1 evaluation(s)" in switch["reason"]
    assert (stop["event"], stop["epoch"], stop["stage"]) == ("stop", 4, 2)
    assert metrics["epochs"][2]["decision"] == {"action": "switch", "reason": switch["reason"]}
    assert all(r["lr"] <= 3e-4 for r in metrics["epochs"][3:])
    assert metrics["epochs"][1]["lr"] > 3e-4

    start, stage1 = state_dict(data["model"]), state_dict(out / "checkpoints" / "epoch_2")
    final = state_dict(out / "final")
    assert max_diff(start, stage1, "visual.") == 0.0  # locked: not one bit moved
    assert max_diff(start, stage1, "transformer.") > 1e-4
    assert max_diff(start, stage1, "logit_scale") > 0
    assert max_diff(stage1, final, "visual.") > 1e-5  # unlocked in stage 2
    state, optimizer, _ = load_state(out / "checkpoints" / "epoch_2")
    assert (state.stage, state.stage_epoch, optimizer) == (2, 0, None)


def test_stages_also_end_at_their_epoch_limits_and_text_can_be_the_locked_tower(
    data: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "run"
    argv = _run(data, out, "--two-stage", "--lock-text", "--epochs", "1", "--patience", "5")
    assert main([*argv, "--stage2-max-epochs", "1"]) == 0
    assert "stage 1: text tower locked" in capsys.readouterr().out
    import json

    events = json.loads((out / "metrics.json").read_text())["events"]
    assert [(e["event"], e["reason"]) for e in events] == [
        ("stage_switch", "stage 1 reached its 1 epochs (--epochs)"),
        ("stop", "stage 2 reached its 1 epochs (--stage2-max-epochs)"),
    ]
    start, stage1 = state_dict(data["model"]), state_dict(out / "checkpoints" / "epoch_1")
    assert max_diff(start, stage1, "transformer.") == 0.0
    assert max_diff(start, stage1, "token_embedding.") == 0.0
    assert max_diff(start, stage1, "visual.") > 1e-4
    assert max_diff(stage1, state_dict(out / "final"), "transformer.") > 1e-5


def test_two_stage_needs_validation_data(
    data: dict[str, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["train", "--train-data", str(data["train"]), "--two-stage"]
    assert main(argv) == 2
    assert "give --val-data" in capsys.readouterr().err


def test_locked_image_tower_gets_no_gradient_in_a_step(data: dict[str, Path]) -> None:
    from clip_multimodal.training.distributed import DistEnv, wrap_for_training
    from clip_multimodal.training.step import StepRunner

    model = open_clip.CLIP(**TINY_CFG)
    apply_locks(model, TowerLocks(image=True))
    optimizer = make_optimizer(model, TrainConfig(lr=1e-3))
    step = StepRunner(wrap_for_training(model, DistEnv()), model, optimizer, DistEnv())
    loss = step(torch.randn(4, 3, 32, 32), torch.randint(1, 100, (4, 16)))
    assert torch.isfinite(loss)
    assert all(p.grad is None for p in model.visual.parameters())
    assert model.text_projection.grad is not None
