"""The HTTP service: `pip install "clip-multimodal[server]"`, then `clip-multimodal serve`.

`create_app(settings)` builds the FastAPI app; `ServerSettings` holds its limits; the
`MicroBatcher` merges concurrent requests into shared forward passes. Names load lazily, so
the CLI can check `check_bind` before importing a web framework.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from clip_multimodal.errors import require

__all__ = ["InsecureBindError", "MicroBatcher", "ServerSettings", "check_bind", "create_app"]

_EXPORTS = {
    "create_app": "clip_multimodal.server.app",
    "MicroBatcher": "clip_multimodal.server.batcher",
    "InsecureBindError": "clip_multimodal.server.bind",
    "check_bind": "clip_multimodal.server.bind",
    "ServerSettings": "clip_multimodal.server.settings",
}

if TYPE_CHECKING:
    from clip_multimodal.server.app import create_app
    from clip_multimodal.server.batcher import MicroBatcher
    from clip_multimodal.server.bind import InsecureBindError, check_bind
    from clip_multimodal.server.settings import ServerSettings


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'clip_multimodal.server' has no attribute {name!r}")
    if name == "create_app":
        require("fastapi", "server", "The HTTP service")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value
