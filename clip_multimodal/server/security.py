"""The service's guards: Host and Origin, bearer token, body size cap, request timeout, headers.

The bearer token is FastAPI's `HTTPBearer` scheme, checked by `check_token`, a dependency of
every /v1 route that runs before the route's body parser. The other guards are raw ASGI
middlewares, so they act before FastAPI parses anything; the body cap acts when a body is read,
refusing it by its Content-Length before the first byte and cutting it off while streaming.
"""

from __future__ import annotations

import asyncio
import hmac
import logging
from collections.abc import Awaitable, Callable, Collection, MutableMapping
from typing import Annotated, Any
from urllib.parse import urlsplit

from fastapi import Security
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from clip_multimodal.server.bind import is_loopback
from clip_multimodal.server.deps import SettingsDep
from clip_multimodal.server.errors import ApiError, error_body

__all__ = [
    "BodyLimitMiddleware",
    "HeadersMiddleware",
    "HostMiddleware",
    "KeepAliveMiddleware",
    "OriginMiddleware",
    "TimeoutMiddleware",
    "check_token",
    "normal_origin",
]

log = logging.getLogger("clip_multimodal.server")

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

#: Every data endpoint lives under /v1: it needs the token and runs under the request timeout.
#: The liveness probe, the page and the API docs stay open.
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


_BEARER = HTTPBearer(
    auto_error=False, description="needed on every /v1 request when the server has a --token"
)


async def check_token(
    settings: SettingsDep,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Security(_BEARER)],
) -> None:
    """Requires `Authorization: Bearer <token>` when the server has a token (every /v1 route
    depends on it, ahead of its body: a request without the token never has its body read)."""
    if settings.token is None:
        return
    given = credentials.credentials.strip() if credentials is not None else ""
    if not given:
        raise ApiError(
            401, "this server needs a token: send the header 'Authorization: Bearer <token>'"
        )
    # Starlette decodes headers as latin-1: compare the bytes as sent, in constant time.
    if not hmac.compare_digest(given.encode("latin-1"), settings.token.encode()):
        raise ApiError(401, "invalid token")


def _protected(scope: Scope) -> bool:
    return str(scope.get("path", "")).startswith(PROTECTED_PREFIX)


class BodyTooLargeError(ApiError):
    def __init__(self, limit: int) -> None:
        super().__init__(413, f"request body exceeds the {limit} byte limit; send a smaller image")


class BodyLimitMiddleware:
    """Caps request bodies when they are read: by Content-Length before the first chunk, and
    by counting streamed chunks. A body nobody reads (a request refused first) is not judged."""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        length = _header(scope, b"content-length")
        declared = int(length) if length is not None and length.isdigit() else 0
        seen = 0

        async def limited() -> Message:
            nonlocal seen
            if declared > self.max_bytes:  # refused by its length before a byte is read
                raise BodyTooLargeError(self.max_bytes)
            message = await receive()
            seen += len(message.get("body", b""))
            if seen > self.max_bytes:
                raise BodyTooLargeError(self.max_bytes)  # the app's handler answers 413
            return message

        await self.app(scope, limited, send)


class TimeoutMiddleware:
    """Answers 504 when a /v1 request runs longer than `seconds`.

    The client is answered at once. The request's batcher work is abandoned: queued, it is
    dropped; running, its remaining image slices are skipped (a running encoder call cannot be
    interrupted, so the encoder stays consistent).
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


# -- Host and Origin: what a browser on another site cannot get past ---------------------------

#: Methods that change something or cost work; a page on another site may not send them.
UNSAFE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
_DEFAULT_PORTS = {"http": 80, "https": 443}


def _split_host(value: str) -> tuple[str, int | None]:
    """(lower-case host name, port or None) of a Host header value; ("", None) if malformed."""
    if any(c in value for c in "@/\\?#") or not value.isprintable():
        return "", None
    try:
        parts = urlsplit(f"//{value}")
        return (parts.hostname or "").rstrip("."), parts.port
    except ValueError:
        return "", None


def normal_origin(origin: str) -> str:
    """`scheme://host:port` in lower case with the default port made explicit."""
    try:
        parts = urlsplit(origin.strip())
        scheme, host = parts.scheme.lower(), (parts.hostname or "").rstrip(".")
        port = parts.port or _DEFAULT_PORTS.get(scheme)
    except ValueError:
        return origin
    if not scheme or not host or parts.path not in ("", "/"):
        return origin  # "null" and other opaque origins match only themselves
    return f"{scheme}://{host}:{port}"


class HostMiddleware:
    """Answers 403 unless the Host header names this server: the defence against DNS rebinding.

    A page on `evil.example` whose name is re-pointed at 127.0.0.1 reaches a loopback service
    with `Host: evil.example`. Allowed are `localhost`, loopback addresses, the address the
    connection arrived at, and `allowed_hosts` (`*` allows any, e.g. behind a proxy that
    checks it).
    """

    def __init__(self, app: ASGIApp, allowed_hosts: Collection[str] = ()) -> None:
        self.app = app
        self.any = "*" in allowed_hosts
        self.extra = {h.lower().rstrip(".") for h in allowed_hosts}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        raw = _header(scope, b"host") if scope["type"] == "http" else None
        if raw is None or self.any or self._allowed(raw.decode("latin-1"), scope):
            await self.app(scope, receive, send)  # no Host at all: not a browser's request
            return
        message = (
            f"Host {_short(raw)!r} is not a name of this server; use its address or localhost, "
            "or start it with --allow-host NAME"
        )
        await _send_error(send, 403, message)

    def _allowed(self, value: str, scope: Scope) -> bool:
        host, _ = _split_host(value)
        server = scope.get("server") or ("", None)
        bound = str(server[0]).lower().strip("[]")
        return bool(host) and (
            host == "localhost" or is_loopback(host) or host == bound or host in self.extra
        )


class OriginMiddleware:
    """Answers 403 to a state-changing request from another site, unless its origin is allowed.

    Browsers send `Origin` (and `Sec-Fetch-Site`) with every POST; a form or fetch from a page
    the user happens to visit must not add images or spend the model's time. Same-origin
    requests (the search page) and clients that are not browsers (no Origin) pass.
    """

    def __init__(self, app: ASGIApp, allowed_origins: Collection[str] = ()) -> None:
        self.app = app
        self.allowed = {normal_origin(o) for o in allowed_origins}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope.get("method") not in UNSAFE_METHODS:
            await self.app(scope, receive, send)
            return
        origin = _header(scope, b"origin")
        site = (_header(scope, b"sec-fetch-site") or b"").lower()
        if origin is None:
            cross = site in (b"cross-site", b"same-site")
        else:
            cross = not self._same_or_allowed(origin.decode("latin-1"), scope)
        if not cross:
            await self.app(scope, receive, send)
            return
        shown = _short(origin) if origin is not None else f"a {site.decode()} page"
        message = (
            f"cross-origin request from {shown} refused; start the server with "
            "--allow-origin ORIGIN to let that site call the API"
        )
        await _send_error(send, 403, message)

    def _same_or_allowed(self, origin: str, scope: Scope) -> bool:
        normal = normal_origin(origin)
        if normal in self.allowed:
            return True
        host, port = _split_host((_header(scope, b"host") or b"").decode("latin-1"))
        scheme = str(scope.get("scheme", "http"))
        own = f"{scheme}://{host}:{port or _DEFAULT_PORTS.get(scheme)}"
        return bool(host) and normal == own


def _short(value: bytes | str) -> str:
    text = value.decode("latin-1") if isinstance(value, bytes) else value
    return text[:100]


# -- keep-alive after an error ------------------------------------------------------------------


class KeepAliveMiddleware:
    """Stops an error that was already answered, so the connection stays open.

    Starlette answers an unexpected exception with our typed 500 (and logs it), then raises it
    again for the server to see; uvicorn then closes the connection, so one bad request cost
    every keep-alive client its connection. Here the already-answered error ends; an error with
    no complete response still propagates (the connection must close).
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        done = False

        async def tracking(message: Message) -> None:
            nonlocal done
            if message["type"] == "http.response.body" and not message.get("more_body", False):
                done = True
            await send(message)

        try:
            await self.app(scope, receive, tracking)
        except Exception:
            if not done:
                raise
            log.debug("an answered error ended at the keep-alive guard", exc_info=True)
