"""The service's guards: bearer token, body size cap, request timeout, headers.

The guards are raw ASGI middlewares, so they act before FastAPI parses anything: a request
without the token never has its body read, and an oversized body is cut off while streaming.
"""

from __future__ import annotations

import asyncio
import hmac
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from clip_multimodal.server.errors import ApiError, error_body

__all__ = ["AuthMiddleware", "BodyLimitMiddleware", "HeadersMiddleware", "TimeoutMiddleware"]

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

#: Paths that stay open without a token: the liveness probe, the page and the API docs.
#: Every data endpoint lives under /v1 and needs the token.
PROTECTED_PREFIX = "/v1/"


async def _send_error(send: Send, status: int, message: str, **headers: str) -> None:
    body = error_body(status, message)
    raw = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    raw += [(k.lower().encode(), v.encode()) for k, v in headers.items()]
    await send({"type": "http.response.start", "status": status, "headers": raw})
    await send({"type": "http.response.body", "body": body})


def _header(scope: Scope, name: bytes) -> bytes | None:
    for key, value in scope.get("headers", ()):
        if key.lower() == name:
            return bytes(value)
    return None


class AuthMiddleware:
    """Requires `Authorization: Bearer <token>` on every /v1 request when a token is set."""

    def __init__(self, app: ASGIApp, token: str | None) -> None:
        self.app = app
        self.token = token.encode() if token else None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if self.token is None or scope["type"] != "http" or not _protected(scope):
            await self.app(scope, receive, send)
            return
        scheme, _, given = (_header(scope, b"authorization") or b"").partition(b" ")
        if scheme.lower() != b"bearer" or not given.strip():
            message = "this server needs a token: send the header 'Authorization: Bearer <token>'"
            await _send_error(send, 401, message, **{"WWW-Authenticate": "Bearer"})
            return
        if not hmac.compare_digest(given.strip(), self.token):
            await _send_error(send, 401, "invalid token", **{"WWW-Authenticate": "Bearer"})
            return
        await self.app(scope, receive, send)


def _protected(scope: Scope) -> bool:
    return str(scope.get("path", "")).startswith(PROTECTED_PREFIX)


class BodyTooLargeError(ApiError):
    def __init__(self, limit: int) -> None:
        super().__init__(413, f"request body exceeds the {limit} byte limit; send a smaller image")


class BodyLimitMiddleware:
    """Caps request bodies: by Content-Length up front, and by counting streamed chunks."""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        length = _header(scope, b"content-length")
        if length is not None and length.isdigit() and int(length) > self.max_bytes:
            await _send_error(send, 413, str(BodyTooLargeError(self.max_bytes)))
            return
        seen = 0

        async def limited() -> Message:
            nonlocal seen
            message = await receive()
            seen += len(message.get("body", b""))
            if seen > self.max_bytes:
                raise BodyTooLargeError(self.max_bytes)  # the app's handler answers 413
            return message

        await self.app(scope, limited, send)


class TimeoutMiddleware:
    """Answers 504 when a /v1 request runs longer than `seconds`.

    The client is answered at once; model work already running in a worker thread finishes in
    the background (threads cannot be interrupted), so the encoder stays consistent.
    """

    def __init__(self, app: ASGIApp, seconds: float) -> None:
        self.app = app
        self.seconds = seconds

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not _protected(scope):
            await self.app(scope, receive, send)
            return
        started = False

        async def tracking(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await asyncio.wait_for(self.app(scope, receive, tracking), self.seconds)
        except asyncio.TimeoutError:
            if started:  # too late to change the status; the client sees a cut response
                raise
            message = f"the request took longer than {self.seconds:g}s"
            await _send_error(send, 504, message)


class HeadersMiddleware:
    """Adds `X-Content-Type-Options: nosniff`, so browsers never guess a served file's type."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        async def with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                headers.append((b"x-content-type-options", b"nosniff"))
                message["headers"] = headers
            await send(message)

        await self.app(scope, receive, with_headers)
