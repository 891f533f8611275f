"""Data-parallel training: process groups, the gathered loss, and the DDP wrapper.

The same command runs as one process or under `torchrun --nproc_per_node N` (gloo on the CPU,
nccl on GPUs). Each rank embeds its own batch; the features of every rank are gathered with
their gradients (open_clip's `gather_with_grad`) and each rank computes the notes' loss on the
global batch, so N processes with batch B train exactly like one process with batch N x B.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any, TypeVar

import torch
import torch.distributed as dist
from torch import nn

from clip_multimodal.devices import pick_device
from clip_multimodal.training.loss import clip_loss

__all__ = [
    "ContrastiveForward",
    "DistEnv",
    "barrier",
    "broadcast_object",
    "gather_with_grad",
    "gathered_clip_loss",
    "init_distributed",
    "mean_across_ranks",
    "pick_train_device",
    "shutdown",
    "unwrap",
    "wrap_for_training",
]

T = TypeVar("T")
_log = logging.getLogger(__name__)


@dataclass(frozen=True)
class DistEnv:
    """Where this process stands: its rank, the number of processes, its device."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))
    backend: str | None = None
    timeout_min: float | None = None  # the process group's limit on one collective

    @property
    def distributed(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def _env_int(*names: str, default: int = 0) -> int:
    for name in names:
        if name in os.environ:
            return int(os.environ[name])
    return default


def pick_train_device(
    device: str, local_rank: int | None = None, *, world_size: int = 1
) -> torch.device:
    """`auto` is this rank's GPU when CUDA is available, else the CPU (never MPS).

    Under torchrun (`world_size` > 1) every CUDA device is `cuda:local_rank`: one explicit
    `--device cuda:N` given to all ranks would otherwise put every rank on the same GPU.
    """
    dev = pick_device(device, mps=False, local_rank=local_rank)
    if world_size > 1 and dev.type == "cuda" and local_rank is not None:
        if dev.index != local_rank:
            _log.warning(
                "--device %s: under torchrun each rank uses its own GPU; rank with "
                "LOCAL_RANK=%d trains on cuda:%d",
                device,
                local_rank,
                local_rank,
            )
        dev = torch.device("cuda", local_rank)
    return dev


def init_distributed(device: str = "auto", timeout_min: float = 60.0) -> DistEnv:
    """Join the process group torchrun describes in the environment (or run alone).

    torchrun sets RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR and MASTER_PORT; without them this
    is a single process and no group is created. `timeout_min` bounds every collective: the
    other ranks wait in one while rank 0 alone evaluates and saves, so it must outlast that
    (torch's default, 10 minutes, trips the NCCL watchdog on a large validation set).
    """
    rank = _env_int("RANK")
    world = _env_int("WORLD_SIZE", default=1)
    local_rank = _env_int("LOCAL_RANK")
    # Alone without LOCAL_RANK, a bare `cuda` is the current device, not always GPU 0.
    rank_gpu = local_rank if "LOCAL_RANK" in os.environ else None
    dev = pick_train_device(device, rank_gpu, world_size=world)
    if world <= 1:
        return DistEnv(device=dev)
    backend = "nccl" if dev.type == "cuda" else "gloo"
    if dev.type == "cuda":
        torch.cuda.set_device(dev)
    if not dist.is_initialized():
        dist.init_process_group(
            backend, rank=rank, world_size=world, timeout=timedelta(minutes=timeout_min)
        )
    return DistEnv(rank, world, local_rank, dev, backend, timeout_min)


def shutdown(env: DistEnv) -> None:
    """Leave the process group (after the last collective)."""
    if env.distributed and dist.is_initialized():
        dist.destroy_process_group()


def barrier(env: DistEnv) -> None:
    if env.distributed:
        dist.barrier()


def broadcast_object(obj: T, env: DistEnv) -> T:
    """Rank 0's `obj` on every rank (decisions, names, the checked data table)."""
    if not env.distributed:
        return obj
    box: list[Any] = [obj]
    dist.broadcast_object_list(box, src=0)
    return box[0]  # type: ignore[no-any-return]


def mean_across_ranks(value: torch.Tensor, env: DistEnv) -> float:
    """The mean of a scalar tensor over every rank."""
    if env.distributed:
        value = value.detach().clone()
        dist.all_reduce(value)
        value /= env.world_size
    return float(value.item())


def gathered_clip_loss(
    image_features: torch.Tensor,
    text_features: torch.Tensor,
    log_scale: torch.Tensor,
    env: DistEnv,
) -> torch.Tensor:
    """The notes' loss over the global batch: every rank's features, gathered with gradients.

    All-gather's backward sums each rank's gradient with respect to this rank's features, and
    DDP averages the parameter gradients over ranks, so the update is exactly the gradient of
    the loss on the global batch (open_clip's gather_with_grad).
    """
    if env.distributed:
        image_features = gather_with_grad(image_features)
        text_features = gather_with_grad(text_features)
    return clip_loss(image_features, text_features, log_scale)


class _GatherWithGrad(torch.autograd.Function):
    """All-gather along dim 0 whose backward hands each rank the summed gradient of its rows.

    The sum is an all-reduce (every backend has it; gloo lacks reduce-scatter), then this
    rank's slice. Local batches must have equal sizes, which drop_last guarantees.
    """

    @staticmethod
    def forward(ctx: Any, tensor: torch.Tensor) -> torch.Tensor:
        tensor = tensor.contiguous()
        parts = [torch.empty_like(tensor) for _ in range(dist.get_world_size())]
        dist.all_gather(parts, tensor)
        ctx.rows, ctx.rank = tensor.shape[0], dist.get_rank()
        return torch.cat(parts)

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> torch.Tensor:
        grad = grad.contiguous().clone()
        dist.all_reduce(grad)
        return grad[ctx.rank * ctx.rows : (ctx.rank + 1) * ctx.rows]


def gather_with_grad(tensor: torch.Tensor) -> torch.Tensor:
    """Every rank's rows of `tensor`, concatenated in rank order, differentiable."""
    out: torch.Tensor = _GatherWithGrad.apply(tensor)
    return out


class ContrastiveForward(nn.Module):
    """Both towers and the temperature in one forward call.

    DDP synchronizes gradients only for work done inside its `forward`, so calling
    `encode_image` and `encode_text` separately on a wrapped model would skip the sync.
    """

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(
        self, images: torch.Tensor, tokens: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        image_features = self.model.encode_image(images)  # type: ignore[operator]
        text_features = self.model.encode_text(tokens)  # type: ignore[operator]
        return image_features, text_features, self.model.logit_scale  # type: ignore[return-value]


def wrap_for_training(model: nn.Module, env: DistEnv) -> nn.Module:
    """The module a step calls: ContrastiveForward, inside DDP when distributed.

    Build a new wrapper whenever the set of trainable parameters changes (a stage switch):
    DDP registers the parameters that need gradients when it is constructed.
    """
    forward = ContrastiveForward(model)
    if not env.distributed:
        return forward
    from torch.nn.parallel import DistributedDataParallel

    device_ids = [env.device.index] if env.device.type == "cuda" else None
    return DistributedDataParallel(forward, device_ids=device_ids)


def unwrap(forward: nn.Module) -> nn.Module:
    """The open_clip model inside a wrapper made by `wrap_for_training`."""
    inner = getattr(forward, "module", forward)
    model = inner.model
    assert isinstance(model, nn.Module)
    return model
