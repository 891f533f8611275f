"""Device memory for the pipeline: what counts as out-of-memory, releasing it, host copies.

Three facts of CUDA that the pipeline's stages share:

- out-of-memory arrives in several shapes: torch's `OutOfMemoryError`, a plain
  `RuntimeError` from torchvision's nvJPEG decoder ("Error while decoding JPEG images: …"
  around either torch's message or nvJPEG's allocator status) and from cuBLAS
  (`CUBLAS_STATUS_ALLOC_FAILED`);
- `empty_cache()` frees nothing that a live tensor still holds, so a stage calls
  `release_cached` after the failed attempt's traceback (and the tensors its frames hold) is
  gone, outside the `except` block;
- a non-blocking host-to-device copy only overlaps from pinned memory; from pageable memory it
  is a synchronous copy in disguise.
"""

from __future__ import annotations

import re

import torch

__all__ = ["decode_bytes", "is_out_of_memory", "release_cached", "to_device"]

# nvJPEG's NVJPEG_STATUS_ALLOCATOR_FAILURE (5), as torchvision's checks print it
# ("Failed to decode batch: 5"), and CUDA's cudaErrorMemoryAllocation (2) after a sync.
_NVJPEG_ALLOC = re.compile(r"Failed to [^:]*: 5\b|Failed to synchronize CUDA stream: 2\b")
_OOM_WORDS = ("out of memory", "CUBLAS_STATUS_ALLOC_FAILED", "CUDNN_STATUS_ALLOC_FAILED")


def is_out_of_memory(exc: BaseException) -> bool:
    """Whether `exc` says the device ran out of memory (then: shrink and retry, not give up)."""
    if isinstance(exc, torch.OutOfMemoryError):
        return True
    if not isinstance(exc, RuntimeError):
        return False
    message = str(exc)
    if any(word.lower() in message.lower() for word in _OOM_WORDS):
        return True
    return "Error while decoding JPEG images" in message and bool(_NVJPEG_ALLOC.search(message))


def release_cached(device: torch.device) -> None:
    """Give the allocator's cached blocks back, so the next, smaller try can use them.

    Call it after the failed attempt's exception is gone: its traceback holds the frames,
    and the frames the tensors, whose blocks would otherwise stay in use.
    """
    if device.type == "cuda":
        torch.cuda.empty_cache()


def to_device(tensor: torch.Tensor, device: torch.device) -> torch.Tensor:
    """`tensor` on `device`; a host tensor bound for CUDA is pinned first, then copied
    without blocking (torch's caching host allocator keeps the pinned block until the copy
    has run)."""
    if device.type != "cuda" or tensor.device.type == "cuda":
        return tensor.to(device)
    return tensor.pin_memory().to(device, non_blocking=True)


# Device bytes per source pixel while an image is decoded and preprocessed: the decoded
# uint8 image (3), nvJPEG's planes while it decodes (3), the group's stacked uint8 copy (3)
# and its float32 copy (12).
_BYTES_PER_PIXEL = 3 + 3 + 3 + 12


def decode_bytes(height: int, width: int, size: int) -> int:
    """The device memory one height x width image needs on its way to a size x size input:
    the per-pixel buffers above plus the float32 outputs of the resize's two passes."""
    long, short = max(height, width, 1), max(1, min(height, width))
    passes = 12 * size * long + 12 * size * size * long // short
    return _BYTES_PER_PIXEL * height * width + passes
