"""Where a model runs: the one place that turns `auto` (or a device string) into a device."""

from __future__ import annotations

import torch

from clip_multimodal.errors import InvalidModelSpecError

__all__ = ["pick_device"]


def pick_device(
    device: str | torch.device = "auto", *, mps: bool = True, local_rank: int | None = None
) -> torch.device:
    """The torch device for `device`.

    Args:
        device: `auto` (CUDA, then MPS when `mps`, then the CPU) or a torch device string.
        mps: whether `auto` may pick Apple's MPS (training keeps to CUDA or the CPU).
        local_rank: a torchrun rank's GPU; a bare `cuda` becomes `cuda:local_rank`.

    A bare `cuda` always comes back with an explicit index (`local_rank`, else the current
    device): torch resolves an index-less CUDA device per thread, so after `set_device(k)` a
    decode thread would run on GPU 0 while the model is on GPU k.

    Raises:
        InvalidModelSpecError: `device` names no torch device (a ValueError).
        ValueError: CUDA is asked for on a machine without it.
    """
    if str(device) == "auto":
        device = _first_available(mps)
    try:
        dev = torch.device(device)
    except RuntimeError as exc:  # torch's message lists the device types it knows
        raise InvalidModelSpecError("device", f"{device!r} is not a device: {exc}") from exc
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {str(device)!r}: CUDA is not available here; use cpu")
    if dev.type == "cuda" and dev.index is None:
        index = torch.cuda.current_device() if local_rank is None else local_rank
        dev = torch.device("cuda", index)
    return dev


def _first_available(mps: bool) -> str:
    if torch.cuda.is_available():
        return "cuda"
    if mps and torch.backends.mps.is_available():
        return "mps"
    return "cpu"
