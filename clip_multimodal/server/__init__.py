"""The HTTP service: `pip install "clip-multimodal[server]"`, then `clip-multimodal serve`.

`create_app(settings)` builds the FastAPI app; `ServerSettings` holds its limits; the
`MicroBatcher` merges concurrent requests into shared forward passes.
"""

from __future__ import annotations

from clip_multimodal.errors import require

require("fastapi", "server", "The HTTP service")

from clip_multimodal.server.app import create_app  # noqa: E402
from clip_multimodal.server.batcher import MicroBatcher  # noqa: E402
from clip_multimodal.server.security import InsecureBindError, check_bind  # noqa: E402
from clip_multimodal.server.settings import ServerSettings  # noqa: E402

__all__ = ["InsecureBindError", "MicroBatcher", "ServerSettings", "check_bind", "create_app"]
