"""The HTTP service: `pip install "clip-multimodal[server]"`, then `clip-multimodal serve`.

`create_app(settings)` builds the FastAPI app; `ServerSettings` holds its limits; the
`MicroBatcher` merges concurrent requests into shared forward passes. Names load lazily, so
the CLI can check `check_bind` before importing a web framework.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from clip_multimodal._lazy import lazy_exports
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

_lazy_getattr, __dir__ = lazy_exports(__name__, _EXPORTS)


def __getattr__(name: str) -> Any:
    if name == "create_app":  # the web framework is an extra: say which, not ImportError
        require("fastapi", "server", "The HTTP service")
    return _lazy_getattr(name)
