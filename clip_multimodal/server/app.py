"""`create_app(settings)`: the FastAPI service, with the search page at `/`."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import TYPE_CHECKING

from fastapi import FastAPI
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import FileResponse
from fastapi.staticfiles import StaticFiles
from starlette.types import ASGIApp

import clip_multimodal
from clip_multimodal.server.errors import install_error_handlers
from clip_multimodal.server.routes import router
from clip_multimodal.server.security import (
    BodyLimitMiddleware,
    HeadersMiddleware,
    HostMiddleware,
    KeepAliveMiddleware,
    OriginMiddleware,
    TimeoutMiddleware,
)
from clip_multimodal.server.service import Service
from clip_multimodal.server.settings import ServerSettings

if TYPE_CHECKING:
    from chromadb.api import ClientAPI

    from clip_multimodal.types import Encoder

__all__ = ["create_app"]

STATIC = Path(__file__).parent / "static"

#: The page loads only its own files; thumbnails may come as blob: URLs (with a token).
PAGE_CSP = (
    "default-src 'self'; img-src 'self' blob: data:; style-src 'self'; script-src 'self'; "
    "object-src 'none'; base-uri 'none'; frame-ancestors 'none'"
)


def _load_encoder(settings: ServerSettings) -> Encoder:
    from clip_multimodal.encoder import CLIPEncoder

    return CLIPEncoder.from_spec(settings.model_spec, max_decode_bytes=settings.max_decode_bytes)


class _App(FastAPI):
    """FastAPI with the keep-alive guard outside Starlette's error middleware (which re-raises
    every 500 it answers)."""

    def build_middleware_stack(self) -> ASGIApp:
        return KeepAliveMiddleware(super().build_middleware_stack())


def create_app(
    settings: ServerSettings | None = None,
    *,
    encoder: Encoder | None = None,
    client: ClientAPI | None = None,
) -> FastAPI:
    """Build the service: one warm encoder, one index, a micro-batcher, and the search page.

    Args:
        settings: limits and locations (defaults: the demo model, the default data dir,
            loopback-only features).
        encoder: a loaded encoder to serve instead of loading `settings.model_spec`.
        client: a Chroma client to use instead of the one `settings` describe.

    Returns:
        The ASGI app; run it with `clip_multimodal.server.serve.serve(app, settings, host=...,
        port=...)` (uvicorn with a header deadline), or any ASGI server.

    Example:
        >>> app = create_app(ServerSettings(collection="photos", token="s3cret"))
    """
    settings = settings or ServerSettings()
    service = Service(settings, encoder or _load_encoder(settings), client)

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        yield
        service.close()

    app = _App(
        title="clip-multimodal",
        version=clip_multimodal.__version__,
        description="Embed, rank, classify and search images with CLIP, over a Chroma index.",
        lifespan=lifespan,
    )
    app.state.service = service
    install_error_handlers(app)
    app.include_router(router)
    _add_page(app)
    # The last added runs first: headers, Host, Origin, CORS, the body cap, the clock; then the
    # routes' dependencies: the token (on /v1), then the body parser.
    app.add_middleware(TimeoutMiddleware, seconds=settings.request_timeout_s)
    app.add_middleware(BodyLimitMiddleware, max_bytes=settings.max_body_bytes)
    if settings.allowed_origins:  # CORS headers go to these origins only
        app.add_middleware(
            CORSMiddleware,
            allow_origins=list(settings.allowed_origins),
            allow_methods=["GET", "POST"],
            allow_headers=["Authorization", "Content-Type"],
            max_age=600,
        )
    app.add_middleware(OriginMiddleware, allowed_origins=settings.allowed_origins)
    app.add_middleware(HostMiddleware, allowed_hosts=settings.allowed_hosts)
    app.add_middleware(HeadersMiddleware)
    return app


def _add_page(app: FastAPI) -> None:
    app.mount("/static", StaticFiles(directory=STATIC), name="static")

    @app.get("/", include_in_schema=False)
    async def page() -> FileResponse:
        return FileResponse(STATIC / "index.html", headers={"Content-Security-Policy": PAGE_CSP})
