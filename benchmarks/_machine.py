"""What machine a benchmark ran on: CPU model, cores, torch version, GPU name."""

from __future__ import annotations

import os
import platform
from pathlib import Path
from typing import Any

__all__ = ["machine_info", "machine_line"]


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine_info() -> dict[str, Any]:
    """A JSON-ready description of this machine and its software."""
    import torch

    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    info: dict[str, Any] = {
        "cpu": _cpu_model(),
        "cores": usable,
        "torch_threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "python": platform.python_version(),
        "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
        "cpu_auto_precision": _cpu_auto_precision(),
    }
    for name in ("open_clip", "chromadb", "torchvision"):
        try:
            info[name] = __import__(name).__version__
        except (ImportError, AttributeError):
            info[name] = None
    return info


def _cpu_auto_precision() -> str:
    """What `precision="auto"` picks on this machine's CPU (its flags and timed probe)."""
    import torch

    from clip_multimodal.encoder import pick_precision

    return pick_precision("auto", torch.device("cpu"))


def machine_line(info: dict[str, Any] | None = None) -> str:
    """One line naming the machine, for the table's caption."""
    info = info or machine_info()
    gpu = f", GPU {info['gpu']}" if info.get("gpu") else ", no GPU"
    auto = info.get("cpu_auto_precision")
    chose = f"; precision auto on the CPU: {auto}" if auto else ""
    return f"{info['cpu']} ({info['cores']} cores){gpu}; torch {info['torch']}{chose}"
