"""One `auto` device rule for the encoder and training (training never picks MPS)."""

from __future__ import annotations

import pytest
import torch

from clip_multimodal.devices import pick_device
from clip_multimodal.training.distributed import pick_train_device


def test_auto_prefers_cuda_then_mps_then_cpu(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: True)
    assert pick_device("auto") == torch.device("mps")
    assert pick_train_device("auto") == torch.device("cpu")  # training keeps off MPS
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: False)
    assert pick_device("auto") == torch.device("cpu")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert pick_device("auto") == torch.device("cuda")
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
