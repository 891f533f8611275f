"""One training step with open_clip's precision modes, on one process or many.

Precision names follow open_clip's `--precision`: `amp` (float16 autocast with a gradient
scaler on CUDA), `amp_bf16` / `amp_bfloat16` (bfloat16 autocast), and `fp32`. `bf16` is taken as
`amp_bf16` (bfloat16 autocast over float32 weights) because pure-bf16 AdamW updates lose small
steps. `auto` is `amp` on CUDA and `fp32` on the CPU. Weights always stay float32.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass

import torch
from torch import nn

from clip_multimodal.training.distributed import DistEnv, gathered_clip_loss
from clip_multimodal.training.loss import clamp_logit_scale

__all__ = ["PRECISIONS", "StepRunner", "autocast", "autocast_dtype", "resolve_precision"]

PRECISIONS = ("auto", "fp32", "amp", "amp_bf16", "amp_bfloat16", "bf16")


def resolve_precision(precision: str, device: torch.device) -> str:
    """The effective mode: `auto` -> amp on CUDA, fp32 elsewhere; `bf16` -> amp_bf16."""
    if precision not in PRECISIONS:
        raise ValueError(f"--precision must be one of {', '.join(PRECISIONS)}, not {precision!r}")
    if precision == "auto":
        return "amp" if device.type == "cuda" else "fp32"
    return "amp_bf16" if precision in ("bf16", "amp_bfloat16") else precision


def autocast_dtype(precision: str, device: torch.device) -> torch.dtype | None:
    """The autocast dtype of a resolved precision (None: no autocast).

    `amp` on the CPU autocasts to bfloat16: CPU float16 autocast is slow and unscaled.
    """
    if precision == "fp32":
        return None
    if precision == "amp" and device.type == "cuda":
        return torch.float16
    return torch.bfloat16


@contextlib.contextmanager
def autocast(dtype: torch.dtype | None, device: torch.device) -> Iterator[None]:
    """torch.autocast for `dtype`, or nothing for fp32."""
    if dtype is None:
        yield
        return
    with torch.autocast(device_type=device.type, dtype=dtype):
        yield


@dataclass
class StepRunner:
    """Runs optimizer steps on batches: forward under autocast, the gathered loss, backward,
    optional gradient clipping, the step, and CLIP's temperature clamp.

    Attributes:
        forward: a ContrastiveForward (inside DDP when distributed).
        model: the open_clip model it wraps (for clipping and the clamp).
        optimizer: its optimizer.
        env: the process's rank, world size and device.
        precision: a resolved precision name.
        grad_clip_norm: clip the global gradient norm to this; None leaves it.
    """

    forward: nn.Module
    model: nn.Module
    optimizer: torch.optim.Optimizer
    env: DistEnv
    precision: str = "fp32"
    grad_clip_norm: float | None = 1.0

    def __post_init__(self) -> None:
        self.dtype = autocast_dtype(self.precision, self.env.device)
        use_scaler = self.dtype == torch.float16
        self.scaler = torch.amp.GradScaler(self.env.device.type) if use_scaler else None

    def __call__(self, images: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
        """One step on one (local) batch; returns the loss as a detached tensor (no sync)."""
        device = self.env.device
        images = images.to(device, non_blocking=True)
        tokens = tokens.to(device, non_blocking=True)
        self.optimizer.zero_grad(set_to_none=True)
        with autocast(self.dtype, device):
            image_features, text_features, log_scale = self.forward(images, tokens)
            loss = gathered_clip_loss(image_features, text_features, log_scale, self.env)
        if self.scaler is not None:
            self.scaler.scale(loss).backward()  # type: ignore[no-untyped-call]
            self.scaler.unscale_(self.optimizer)
            self._clip()
            self.scaler.step(self.optimizer)
            self.scaler.update()
        else:
            loss.backward()  # type: ignore[no-untyped-call]
            self._clip()
            self.optimizer.step()
        clamp_logit_scale(self.model)
        return loss.detach()

    def _clip(self) -> None:
        if self.grad_clip_norm is not None:
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.grad_clip_norm)
