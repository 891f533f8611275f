"""Data-parallel training: 2 CPU processes (gloo on loopback) train exactly like one process on
the same global batch."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

from clip_multimodal.training.distributed import DistEnv, gathered_clip_loss, wrap_for_training
from tests.training_helpers import (
    ddp_gradient_worker,
    global_batch,
    gradients,
    max_diff,
    one_thread,
    state_dict,
    tiny_model,
    tiny_model_dir,
    write_shapes_csv,
)

pytestmark = pytest.mark.slow  # each test starts two Python processes that import torch


@pytest.fixture(autouse=True)
def _one_thread() -> Iterator[None]:
    with one_thread():
        yield


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _single_process_gradients(
    rows: slice | None = None,
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    model = tiny_model()
    images, tokens = global_batch()
    if rows is not None:
        images, tokens = images[rows], tokens[rows]
    image_f, text_f, scale = wrap_for_training(model, DistEnv())(images, tokens)
    loss = gathered_clip_loss(image_f, text_f, scale, DistEnv())
    loss.backward()
    return loss.detach(), gradients(model)


def test_gathered_loss_gives_each_rank_the_global_batch_gradient(tmp_path: Path) -> None:
    from torch.multiprocessing.spawn import spawn

    spawn(ddp_gradient_worker, args=(2, _free_port(), str(tmp_path)), nprocs=2, join=True)
    loss, expected = _single_process_gradients()
    for rank in (0, 1):
        result = torch.load(tmp_path / f"rank{rank}.pt", weights_only=True)
        assert torch.allclose(result["loss"], loss, atol=1e-6)
        assert result["grads"].keys() == expected.keys()
        assert max_diff(result["grads"], expected) < 1e-6  # same scale, same direction
        assert result["timeout_s"] == 45 * 60  # init_distributed's timeout reached the group
    # The check has teeth: one rank's half batch alone gives other gradients.
    _, half = _single_process_gradients(slice(0, 4))
    assert max_diff(half, expected) > 1e-3


def test_torchrun_with_two_processes_matches_one_process(tmp_path: Path) -> None:
    model = tiny_model_dir(tmp_path / "model")
    train = write_shapes_csv(tmp_path, "train.csv", 32, seed=0)
    val = write_shapes_csv(tmp_path, "val.csv", 16, seed=1)
    common = ["train", "--model", f"local-dir:{model}", "--train-data", str(train)]
    common += ["--val-data", str(val), "--workers", "0", "--no-augment", "--precision", "fp32"]
    common += ["--warmup", "1", "--lr", "1e-3", "--log-every-n-steps", "0"]
    # Two stages, so the run also re-wraps DDP when the image tower unlocks.
    common += ["--two-stage", "--epochs", "2", "--patience", "1", "--min-delta", "1"]
    common += ["--stage2-max-epochs", "1"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--standalone"]
    per_rank = ["--batch-size", "4", "--output", str(tmp_path / "ddp"), "--dist-timeout-min", "45"]
    ddp = subprocess.run(
        [*torchrun, "--nproc_per_node", "2", "-m", "clip_multimodal.cli", *common, *per_rank],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    assert ddp.returncode == 0, ddp.stderr[-3000:]
    # The ranks wait out rank 0's evaluation under the asked timeout, not torch's 10 minutes.
    assert "training on cpu (2 process(es), gloo, collectives time out after 45 min)" in ddp.stdout
    assert ddp.stdout.count("switching to stage 2") == 1  # rank 0 alone logs

    from clip_multimodal.cli import main

    assert main([*common, "--batch-size", "8", "--output", str(tmp_path / "single")]) == 0

    start = state_dict(model)
    two, one = state_dict(tmp_path / "ddp" / "final"), state_dict(tmp_path / "single" / "final")
    moved = max_diff(start, one)
    assert moved > 1e-3
    # Float summation order only (AdamW's normalised steps magnify it a little); a wrong
    # gradient, such as each rank's local loss, differs by about the movement itself.
    assert max_diff(two, one) < 2e-3 * moved
    runs = [json.loads((tmp_path / r / "metrics.json").read_text()) for r in ("ddp", "single")]
    assert runs[0]["run"]["world_size"] == 2 and runs[0]["run"]["global_batch_size"] == 8
    assert runs[0]["run"]["steps_per_epoch"] == runs[1]["run"]["steps_per_epoch"] == 4
    for a, b in zip(runs[0]["epochs"][1:], runs[1]["epochs"][1:], strict=True):
        assert (a["stage"], a["lr"]) == (b["stage"], b["lr"])
        assert a["loss"] == pytest.approx(b["loss"], abs=1e-5)
    assert [e["event"] for e in runs[0]["events"]] == ["stage_switch", "stop"]
