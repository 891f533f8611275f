"""Fakes for the few things only CUDA has: a device memory limit, nvJPEG's error strings.

Everything else in the device pipeline runs for real on CPU tensors.
"""

from __future__ import annotations

import functools
import threading
import weakref
from collections.abc import Callable
from typing import Any

import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_leaves

# torchvision 0.29's decode_jpegs_cuda wraps every failure in one RuntimeError: STD_TORCH_CHECK
# prefixes function, file and line, then "Error while decoding JPEG images: " and the inner
# message (torch's own for an allocation through the stable ABI, or an nvJPEG status).
_PREFIX = (
    "decode_jpegs_cuda, /__w/vision/vision/pytorch/vision/torchvision/csrc/io/image/cuda/"
    "decode_jpegs_cuda.cpp:168, Error while decoding JPEG images: "
)
TORCHVISION_OOM = _PREFIX + (
    "CUDA out of memory. Tried to allocate 34.33 MiB. GPU 0 has a total capacity of 139.81 "
    "GiB of which 20.00 MiB is free. (originally from aoti_torch_empty_strided API call "
    "failed at torch/csrc/stable/ops.h, line 112)"
)
NVJPEG_ALLOCATOR_FAILURE = (
    _PREFIX + "decode_images, decode_jpegs_cuda.cpp:402, Failed to decode batch: 5"
)
NVJPEG_BAD_JPEG = _PREFIX + "decode_images, decode_jpegs_cuda.cpp:402, Failed to decode batch: 3"
CUBLAS_ALLOC_FAILED = "CUDA error: CUBLAS_STATUS_ALLOC_FAILED when calling `cublasCreate(handle)`"


class DeviceBudget:
    """A fake device's memory: torch.OutOfMemoryError when the live tensors created under it
    pass `limit` bytes.

    Live: storages still referenced by some tensor made under it (views share one). Dispatch
    modes are per thread, so `budgeted(budget, fn)` runs `fn` under a mode of its own in
    whichever thread calls it, all of them counting against this one ledger.
    """

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.peak = 0
        self.refused = 0
        self._lock = threading.Lock()
        self._live: dict[int, tuple[int, list[weakref.ref[torch.Tensor]]]] = {}

    def track(self, tensors: list[torch.Tensor]) -> None:
        with self._lock:
            for tensor in tensors:
                storage = tensor.untyped_storage()
                ptr, size = storage.data_ptr(), storage.nbytes()
                old_size, refs = self._live.get(ptr, (size, []))
                refs.append(weakref.ref(tensor))
                self._live[ptr] = (max(size, old_size), refs)
            live = self._live_bytes()
            if live > self.limit:
                self.refused += 1
                raise torch.OutOfMemoryError(
                    f"CUDA out of memory. Tried to allocate past the fake limit: {live} of "
                    f"{self.limit} bytes live"
                )
            self.peak = max(self.peak, live)

    def _live_bytes(self) -> int:
        total = 0
        for ptr in list(self._live):
            size, refs = self._live[ptr]
            refs[:] = [r for r in refs if r() is not None]
            if refs:
                total += size
            else:
                del self._live[ptr]
        return total


class _Counting(TorchDispatchMode):
    def __init__(self, budget: DeviceBudget) -> None:
        super().__init__()
        self.budget = budget

    def __torch_dispatch__(self, func: Any, types: Any, args: Any = (), kwargs: Any = None) -> Any:
        out = func(*args, **(kwargs or {}))
        made = [t for t in tree_leaves(out) if isinstance(t, torch.Tensor)]
        self.budget.track(made)  # raises past the limit; `out` is dropped with the frame
        return out


def budgeted(budget: DeviceBudget, fn: Callable[..., Any]) -> Callable[..., Any]:
    """`fn` run under `budget` in whichever thread calls it."""

    @functools.wraps(fn)
    def run(*args: Any, **kwargs: Any) -> Any:
        with _Counting(budget):
            return fn(*args, **kwargs)

    return run
