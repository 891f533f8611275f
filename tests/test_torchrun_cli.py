"""`clip-multimodal train` under torchrun, through the console script: the command the
README shows for several machines, run here as one node with two CPU processes (gloo)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from clip_multimodal.models import DEMO_MODEL
from tests.distributed_helpers import free_port, worker_env
from tests.training_helpers import write_shapes_csv

pytestmark = pytest.mark.slow  # two processes import torch and train


def test_torchrun_runs_the_console_script_on_two_processes(tmp_path: Path) -> None:
    train = write_shapes_csv(tmp_path, "train.csv", 16, seed=0)
    val = write_shapes_csv(tmp_path, "val.csv", 8, seed=1)
    torchrun = [str(Path(sys.executable).with_name("torchrun")), "--nnodes", "1"]
    torchrun += ["--nproc-per-node", "2", "--node-rank", "0", "--rdzv-backend", "c10d"]
    torchrun += ["--rdzv-endpoint", f"127.0.0.1:{free_port()}", "--no-python"]
    cli = [str(Path(sys.executable).with_name("clip-multimodal")), "train"]
    cli += ["--model", DEMO_MODEL, "--train-data", str(train), "--val-data", str(val)]
    cli += ["--epochs", "1", "--batch-size", "4", "--workers", "0", "--no-augment"]
    cli += ["--precision", "fp32", "--device", "cpu", "--output", str(tmp_path / "run")]
    done = subprocess.run(
        [*torchrun, *cli],
        capture_output=True,
        text=True,
        env={**worker_env(), "OMP_NUM_THREADS": "1"},
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert "training on cpu (2 process(es), gloo" in done.stdout
    run = json.loads((tmp_path / "run" / "metrics.json").read_text())["run"]
    assert run["world_size"] == 2 and run["global_batch_size"] == 8
    assert (tmp_path / "run" / "final").is_dir()
