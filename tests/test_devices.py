"""One `auto` device rule for the encoder and training (training never picks MPS)."""

from __future__ import annotations

import logging
from datetime import timedelta
from typing import Any

import pytest
import torch
import torch.distributed as dist

from clip_multimodal.devices import pick_device
from clip_multimodal.training.distributed import init_distributed, pick_train_device


def _fake_gpus(monkeypatch: pytest.MonkeyPatch, current: int) -> None:
    """A machine with 4 GPUs whose current device is `current` (as after set_device)."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 4)
    monkeypatch.setattr(torch.cuda, "current_device", lambda: current)


def test_auto_prefers_cuda_then_mps_then_cpu(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: True)
    assert pick_device("auto") == torch.device("mps")
    assert pick_train_device("auto") == torch.device("cpu")  # training keeps off MPS
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: False)
    assert pick_device("auto") == torch.device("cpu")
    _fake_gpus(monkeypatch, current=0)
    assert pick_device("auto") == torch.device("cuda", 0)
    assert pick_train_device("auto", local_rank=3) == torch.device("cuda", 3)
    assert pick_train_device("cuda:1", local_rank=3) == torch.device("cuda", 1)


def test_explicit_devices_pass_through_and_missing_cuda_is_named(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert pick_device("cpu") == torch.device("cpu")
    assert pick_device(torch.device("cpu")) == torch.device("cpu")
    for pick in (pick_device, pick_train_device):
        with pytest.raises(ValueError, match="'cuda': CUDA is not available here; use cpu"):
            pick("cuda")


def test_bare_cuda_gets_the_current_devices_index(monkeypatch: pytest.MonkeyPatch) -> None:
    # An index-less device resolves per thread (decode threads would land on GPU 0).
    _fake_gpus(monkeypatch, current=2)
    assert pick_device("cuda") == torch.device("cuda", 2)
    assert pick_device("auto") == torch.device("cuda", 2)
    assert pick_device(torch.device("cuda")) == torch.device("cuda", 2)
    assert pick_device("cuda:3") == torch.device("cuda", 3)
    assert pick_train_device("cuda") == torch.device("cuda", 2)
    assert pick_device("cpu") == torch.device("cpu")
    assert pick_train_device("cpu", 1, world_size=2) == torch.device("cpu")


def test_torchrun_ranks_take_their_local_rank_gpu(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    _fake_gpus(monkeypatch, current=0)
    with caplog.at_level(logging.WARNING, logger="clip_multimodal.training.distributed"):
        assert pick_train_device("cuda:0", 1, world_size=2) == torch.device("cuda", 1)
    assert [r.getMessage() for r in caplog.records] == [
        "--device cuda:0: under torchrun each rank uses its own GPU; rank with "
        "LOCAL_RANK=1 trains on cuda:1"
    ]
    caplog.clear()
    assert pick_train_device("cuda:1", 1, world_size=2) == torch.device("cuda", 1)
    assert pick_train_device("auto", 3, world_size=4) == torch.device("cuda", 3)
    assert caplog.records == []
    # A single process keeps the device it was given.
    assert pick_train_device("cuda:0", 1) == torch.device("cuda", 0)


def _torchrun_env(monkeypatch: pytest.MonkeyPatch, rank: int, world: int) -> None:
    for name, value in (("RANK", rank), ("LOCAL_RANK", rank), ("WORLD_SIZE", world)):
        monkeypatch.setenv(name, str(value))


def test_init_distributed_puts_rank_on_its_gpu_with_the_timeout(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    _fake_gpus(monkeypatch, current=0)
    _torchrun_env(monkeypatch, rank=1, world=2)
    calls: list[tuple[tuple[Any, ...], dict[str, Any]]] = []
    chosen: list[torch.device] = []
    monkeypatch.setattr(torch.cuda, "set_device", chosen.append)
    monkeypatch.setattr(dist, "is_initialized", lambda: False)
    monkeypatch.setattr(dist, "init_process_group", lambda *a, **k: calls.append((a, k)))
    env = init_distributed("cuda:0", timeout_min=90)
    assert env.device == torch.device("cuda", 1) and chosen == [torch.device("cuda", 1)]
    assert calls == [(("nccl",), {"rank": 1, "world_size": 2, "timeout": timedelta(minutes=90)})]


def test_init_distributed_default_timeout_outlasts_torchs(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    _torchrun_env(monkeypatch, rank=0, world=2)
    calls: list[dict[str, Any]] = []
    monkeypatch.setattr(dist, "is_initialized", lambda: False)
    monkeypatch.setattr(dist, "init_process_group", lambda *a, **k: calls.append(k))
    assert init_distributed("auto").backend == "gloo"
    assert calls[0]["timeout"] == timedelta(minutes=60)
