"""`clip-multimodal train` end to end on a tiny model: flags, errors, outputs that load
everywhere, metrics, resume, TensorBoard, precision."""

from __future__ import annotations

import contextlib
import io
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from clip_multimodal.cli import main
from tests.training_helpers import (
    max_diff,
    one_thread,
    one_thread_per_test,  # noqa: F401 (an autouse fixture: imported, it applies here)
    state_dict,
    tiny_model_dir,
    write_arch,
    write_shapes_csv,
)

OPEN_CLIP_FLAGS = (
    "--train-data",
    "--val-data",
    "--csv-img-key",
    "--csv-caption-key",
    "--csv-separator",
    "--model",
    "--pretrained",
    "--batch-size",
    "--lr",
    "--wd",
    "--warmup",
    "--epochs",
    "--workers",
    "--precision",
    "--grad-checkpointing",
    "--save-frequency",
    "--report-to",
    "--resume",
    "--logs",
    "--name",
    "--seed",
    "--lock-image",
    "--lock-image-unlocked-groups",
    "--lock-text",
    "--lock-text-unlocked-layers",
)
OUR_FLAGS = (
    "--output",
    "--val-label-key",
    "--zeroshot-classes",
    "--two-stage",
    "--stage2-lr",
    "--patience",
    "--min-delta",
    "--stage2-max-epochs",
)


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("train-cli")
    (root / "images").mkdir()
    (root / "images" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\ntruncated")
    bad = [["images/nowhere.png", "a lost square", "square"], ["images/broken.png", "x", "star"]]
    bad.append(["images/train-000.png", "", "circle"])
    return {
        "root": root,
        "model": tiny_model_dir(root / "model"),
        # Tab-separated, with three bad rows: detected, reported, skipped.
        "train": write_shapes_csv(root, "train.csv", 40, seed=0, sep="\t", extra_rows=bad),
        "val": write_shapes_csv(root, "val.csv", 20, seed=1),
    }


def _argv(data: dict[str, Path], out: Path, *extra: str) -> list[str]:
    argv = ["train", "--model", f"local-dir:{data['model']}", "--train-data", str(data["train"])]
    argv += ["--val-data", str(data["val"]), "--batch-size", "8", "--workers", "0"]
    argv += ["--warmup", "2", "--lr", "1e-3", "--output", str(out), "--log-every-n-steps", "0"]
    return [*argv, *extra]


def _run(capsys: pytest.CaptureFixture[str], argv: list[str]) -> tuple[int, str, str]:
    code = main(argv)
    captured = capsys.readouterr()
    return code, captured.out, captured.err


# -- parsing, before any model ----------------------------------------------------------------


def test_help_is_complete_and_mistakes_answer_without_torch(tmp_path: Path) -> None:
    bad_csv = tmp_path / "bad.csv"
    bad_csv.write_text("image,caption\na.png,x\n")
    script = f"""
import contextlib, io, json, sys
from clip_multimodal.cli import main
out, codes = io.StringIO(), []
with contextlib.redirect_stdout(out), contextlib.redirect_stderr(io.StringIO()) as err:
    codes.append(main(["train", "--help"]))
    codes.append(main(["train"]))
    codes.append(main(["train", "--train-data", {str(bad_csv)!r}]))
print(json.dumps({{"codes": codes, "help": out.getvalue(), "err": err.getvalue(),
                  "torch": "torch" in sys.modules}}))
"""
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=True, timeout=120
    )
    report = json.loads(result.stdout)
    assert report["codes"] == [0, 2, 1]
    assert not report["torch"]
    for flag in (*OPEN_CLIP_FLAGS, *OUR_FLAGS):
        assert flag in report["help"], flag
    assert "torchrun --nproc_per_node 2" in report["help"]
    assert "the header has no column 'filepath' (--csv-img-key)" in report["err"]


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--patience", "2"], "--patience watches validation recall"),
        (["--lock-text-unlocked-layers", "1"], "add --lock-text"),
        (["--lock-image-unlocked-groups", "1"], "add --lock-image"),
        (["--zeroshot-classes", "a,b"], "give --val-label-key"),
        (["--zeroshot-template", "a photo", "--val-data", "v.csv"], "has no {} for the class"),
        (["--zeroshot-template", "{} {x}", "--val-data", "v.csv"], "exactly one {}"),
        (["--report-to", "wandb"], "only tensorboard"),
        (["--batch-size", "1"], "at least 2"),
        (["--csv-separator", "::"], "one character"),
        (["--resume", "latest"], "--resume latest needs the run's folder"),
    ],
)
def test_impossible_flag_combinations_are_usage_errors(
    data: dict[str, Path], capsys: pytest.CaptureFixture[str], extra: list[str], message: str
) -> None:
    code, _, err = _run(capsys, ["train", "--train-data", str(data["train"]), *extra])
    assert code == 2
    assert err.startswith("error: ") and message in err
    assert err.count("\n") == 1  # one line


def test_precision_choices_match_the_step(capsys: pytest.CaptureFixture[str]) -> None:
    from clip_multimodal.cli._train import PRECISION_CHOICES
    from clip_multimodal.training.step import PRECISIONS

    assert PRECISION_CHOICES == PRECISIONS


# -- a real run -------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def run(data: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """Two epochs with validation, zero-shot labels and a checkpoint per epoch."""
    out = tmp_path_factory.mktemp("run") / "out"
    argv = _argv(data, out, "--epochs", "2", "--val-label-key", "label")
    argv += ["--zeroshot-template", "a {}", "--zeroshot-template", "a picture of a {}"]
    stdout = io.StringIO()
    with one_thread(), contextlib.redirect_stdout(stdout):
        assert main(argv) == 0
    return {"out": out, "log": stdout.getvalue()}


def test_run_reports_the_separator_and_skipped_rows(run: dict[str, Any]) -> None:
    log = run["log"]
    assert "train.csv: 40 pairs, 3 bad rows skipped (separator: tab (detected))" in log
    assert "skipped line 42: image not found" in log
    assert "skipped line 43: unreadable image" in log
    assert "skipped line 44: empty caption (title)" in log
    assert "val.csv: 20 pairs, 0 bad rows skipped (separator: comma (detected))" in log
    assert (run["out"] / "out.log").read_text().strip() == log.split("\ndone:")[0].strip()


def test_metrics_json_has_one_record_per_epoch(run: dict[str, Any]) -> None:
    metrics = json.loads((run["out"] / "metrics.json").read_text())
    before, *epochs = metrics["epochs"]
    assert before["epoch"] == 0 and before["note"] == "before training"
    assert [r["epoch"] for r in epochs] == [1, 2]
    recall_keys = {f"{d}_R@{k}" for d in ("i2t", "t2i") for k in (1, 5, 10)}
    for record in epochs:
        assert {"stage", "lr", "loss", "time_s", "images_per_s", "decision"} <= record.keys()
        assert record["stage"] == 1 and record["steps"] == 5
        assert recall_keys | {"mean_recall", "zeroshot_top1"} <= record["metrics"].keys()
        assert all(0 <= v <= 1 for v in record["metrics"].values())
        assert record["images_per_s"] > 0 and np.isfinite(record["loss"])
    assert epochs[0]["decision"]["action"] == "continue"
    assert epochs[1]["decision"] == {
        "action": "stop",
        "reason": "stage 1 reached its 2 epochs (--epochs)",
    }
    assert metrics["events"] == [
        {"event": "stop", "epoch": 2, "stage": 1, "reason": epochs[1]["decision"]["reason"]}
    ]
    assert metrics["run"]["global_batch_size"] == 8


def test_outputs_load_unchanged_everywhere(
    data: dict[str, Path], run: dict[str, Any], capsys: pytest.CaptureFixture[str]
) -> None:
    from clip_multimodal import CLIPEncoder
    from clip_multimodal.training import load_local_dir

    out = run["out"]
    for folder in (out / "final", out / "best", *sorted((out / "checkpoints").iterdir())):
        assert (folder / "open_clip_config.json").is_file(), folder
    assert (out / "checkpoints" / "epoch_1" / "train_state.pt").is_file()
    images = sorted((data["root"] / "images").glob("val-*.png"))[:3]
    # The checkpoint folder also holds train_state.pt: the encoder must still pick the model.
    for folder in (out / "final", out / "checkpoints" / "epoch_2"):
        encoder = CLIPEncoder(f"local-dir:{folder}", device="cpu", precision="fp32", num_workers=1)
        model, _, tokenizer = load_local_dir(folder)
        with torch.no_grad():
            ref = model.encode_text(tokenizer(["a red circle"]), normalize=True).numpy()
        assert np.allclose(encoder.embed_texts(["a red circle"]), ref, atol=1e-5)
        assert encoder.embed_images(images).shape == (3, 32)
        encoder.close()
    assert max_diff(state_dict(out / "final"), state_dict(out / "checkpoints" / "epoch_2")) == 0
    # The CLI's own commands take it like any model.
    model_flag = ["--model", f"local-dir:{out / 'final'}", "--device", "cpu"]
    code = main(["classify", *map(str, images), "--labels", "circle,square", "--json", *model_flag])
    assert code == 0
    predictions = json.loads(capsys.readouterr().out)
    assert len(predictions) == 3 and "predictions" in predictions[0]


def test_an_existing_run_is_not_overwritten(
    data: dict[str, Path], run: dict[str, Any], capsys: pytest.CaptureFixture[str]
) -> None:
    code, _, err = _run(capsys, _argv(data, run["out"], "--epochs", "1"))
    assert code == 2
    assert "already holds a run; continue it with --resume latest" in err


def test_a_finished_run_is_not_resumed(
    data: dict[str, Path], run: dict[str, Any], capsys: pytest.CaptureFixture[str]
) -> None:
    code, _, err = _run(capsys, _argv(data, run["out"], "--epochs", "2", "--resume", "latest"))
    assert code == 1
    assert "had finished at epoch 2" in err and "--model local-dir:" in err


# -- resume -----------------------------------------------------------------------------------


def test_resume_continues_exactly_across_a_stage_switch(
    data: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    stages = ["--two-stage", "--epochs", "2", "--patience", "1", "--min-delta", "1"]
    stages += ["--stage2-max-epochs", "2", "--no-augment"]
    full = tmp_path / "full"
    assert main(_argv(data, full, *stages)) == 0
    expected = state_dict(full / "final")
    # Epoch 2 ended stage 1 (its state: start stage 2 fresh); epoch 3 is inside stage 2
    # (its state: stage 2's optimizer).
    for epoch in (2, 3):
        checkpoint = full / "checkpoints" / f"epoch_{epoch}"
        out = tmp_path / f"resumed-{epoch}"
        assert main(_argv(data, out, *stages, "--resume", str(checkpoint))) == 0
        assert max_diff(expected, state_dict(out / "final")) == 0.0, epoch
        records = json.loads((out / "metrics.json").read_text())["epochs"]
        assert [r["epoch"] for r in records] == [0, 1, 2, 3, 4]
    log = capsys.readouterr().out
    assert "resuming from" in log and "epoch 3 done, stage 2" in log
    # Without a checkpoint folder name the run's own folder continues: 'latest'.
    (full / "checkpoints" / "epoch_4" / "train_state.pt").unlink()
    (full / "checkpoints" / "epoch_4" / "open_clip_model.safetensors").unlink()
    assert main(_argv(data, full, *stages, "--resume", "latest")) == 0
    assert max_diff(expected, state_dict(full / "final")) == 0.0


# -- from scratch, TensorBoard, precision ----------------------------------------------------


def test_from_scratch_with_tensorboard_and_bf16_autocast(
    data: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    arch = write_arch(tmp_path / "arch.json")
    out = tmp_path / "scratch"
    argv = _argv(data, out, "--epochs", "1", "--precision", "bf16", "--report-to", "tensorboard")
    argv[argv.index("--model") + 1] = str(arch)
    code, log, _ = _run(capsys, argv)
    assert code == 0
    assert "random initialisation (training from scratch)" in log
    assert "precision amp_bf16" in log
    metrics = json.loads((out / "metrics.json").read_text())
    assert np.isfinite(metrics["epochs"][-1]["loss"])
    assert list((out / "tensorboard").glob("events.out.tfevents.*"))
    config = json.loads((out / "final" / "open_clip_config.json").read_text())
    assert config["model_cfg"]["embed_dim"] == 32
    assert config["preprocess_cfg"]["size"] == 32


def test_grad_checkpointing_gives_the_same_step(
    data: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    common = ["--epochs", "1", "--no-augment", "--save-frequency", "0"]
    assert main(_argv(data, tmp_path / "plain", *common)) == 0
    assert main(_argv(data, tmp_path / "ckpt", *common, "--grad-checkpointing")) == 0
    capsys.readouterr()
    plain, ckpt = state_dict(tmp_path / "plain" / "final"), state_dict(tmp_path / "ckpt" / "final")
    assert max_diff(plain, ckpt) < 1e-5


def test_train_step_benchmark_runs() -> None:
    from benchmarks.train_bench import bench_train_step

    result = bench_train_step(batch_size=4, steps=1, warmup=0, lock_image=True)
    assert result["images_per_s"] > 0 and result["precision"] == "fp32"


def test_the_training_library_never_imports_the_command_layer() -> None:
    """training/ is a library: the `train` command lives in cli/ and calls it, never back."""
    code = (
        "import importlib, json, pkgutil, sys\n"
        "import clip_multimodal.training as t\n"
        "for m in pkgutil.iter_modules(t.__path__):\n"
        "    importlib.import_module(f'clip_multimodal.training.{m.name}')\n"
        "print(json.dumps(sorted(n for n in sys.modules if n.startswith('clip_multimodal.cli'))))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == []
