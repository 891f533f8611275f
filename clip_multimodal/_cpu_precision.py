"""Whether `auto` runs a model in bf16 on this CPU: its flags, then a short timed probe.

A CPU that executes bf16 natively (AVX512-BF16 or AMX) runs CLIP's matrix products in bf16
about twice as fast as in fp32, with cosines to fp32 above 0.9999. The flag alone is not
proof: a CPU (or a torch build) may have it and still be slower, so a probe times one
transformer-sized linear layer at both precisions, once per process (well under 0.5 s).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

import torch

__all__ = [
    "cpu_has_native_bf16",
    "cpu_prefers_bf16",
    "linear_seconds",
    "low_precision_ready",
    "prefers_bf16",
]

#: The probe's layer: a ViT-B MLP block's first product, at a small batch of tokens.
_TOKENS, _WIDTH, _HIDDEN = 256, 512, 2048
_RUNS = 3
_ROUNDS = 2
#: bf16 must win by this margin: a tie is not worth a precision change.
_MARGIN = 0.8

Seconds = Callable[[torch.dtype], float]


def cpu_has_native_bf16() -> bool:
    """The CPU executes bf16 natively (AVX512-BF16 or AMX-BF16), as torch detects it."""
    caps = torch.cpu.get_capabilities()
    return bool(caps.get("avx512_bf16") or caps.get("amx_bf16"))


def linear_seconds(dtype: torch.dtype, timer: Callable[[], float] = time.perf_counter) -> float:
    """The best of a few timed runs of the probe's linear layer at `dtype` (after a warm-up);
    the best, not the mean, because other processes sharing the CPU only ever add time."""
    # The values do not matter to a matrix product's speed; filling is cheaper than drawing.
    x = torch.full((_TOKENS, _WIDTH), 0.5, dtype=dtype)
    w = torch.full((_HIDDEN, _WIDTH), 0.01, dtype=dtype)
    best = float("inf")
    with torch.inference_mode():
        torch.nn.functional.linear(x, w)  # the first call pays for kernel selection
        for _ in range(_RUNS):
            start = timer()
            torch.nn.functional.linear(x, w)
            best = min(best, timer() - start)
    return best


def prefers_bf16(native: bool, seconds: Seconds = linear_seconds) -> bool:
    """bf16 when the CPU has it natively and the probe measures it clearly faster than fp32."""
    if not native:
        return False
    # Alternate the two, so a burst of load from elsewhere does not land on one side only.
    bf16 = fp32 = float("inf")
    for _ in range(_ROUNDS):
        fp32 = min(fp32, seconds(torch.float32))
        bf16 = min(bf16, seconds(torch.bfloat16))
    return bf16 < _MARGIN * fp32


#: The probe's answer, once known: every encoder of a process then runs one precision.
_probed: dict[str, bool] = {}
_probe_lock = threading.Lock()


def cpu_prefers_bf16() -> bool:
    """`prefers_bf16` for this CPU, probed once per process."""
    with _probe_lock:  # two encoders loading at once must not probe (and answer) twice
        if "bf16" not in _probed:
            _probed["bf16"] = prefers_bf16(cpu_has_native_bf16(), _one_thread_seconds)
        return _probed["bf16"]


def _one_thread_seconds(dtype: torch.dtype) -> float:
    # One thread measures the core's own speed: with a thread per core, a core busy with
    # another process stalls the whole product, and such noise flipped the answer under load.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return linear_seconds(dtype)
    finally:
        torch.set_num_threads(threads)


def low_precision_ready(precision: str, model: torch.nn.Module) -> bool:
    """Whether `model`, loaded at `precision`, runs. open_clip's bf16/fp16 cast covers its own
    layers only: a Hugging Face tower keeps fp32 norms and embeddings and fails on the mix."""
    return precision == "fp32" or not any(
        type(m).__module__.startswith("transformers.") for m in model.modules()
    )
