"""Typed error responses: every failure is `{"error": {"type", "message"}}` with a fitting status."""

from __future__ import annotations

import json
import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from clip_multimodal.errors import ImageLoadError, IncompatibleIndexError, IndexUnavailableError

__all__ = ["ERROR_TYPES", "ApiError", "error_body", "install_error_handlers"]

log = logging.getLogger("clip_multimodal.server")

#: The `error.type` of each status code the service answers with.
ERROR_TYPES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    413: "payload_too_large",
    415: "unsupported_media_type",
    422: "validation_error",
    500: "internal_error",
    503: "index_unavailable",
    504: "timeout",
}


class ApiError(Exception):
    """An error the service answers with on purpose: a status code and a message for people."""

    def __init__(self, status: int, message: str, type_: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.type = type_ or ERROR_TYPES.get(status, "error")


def _payload(status: int, message: str, type_: str | None) -> dict[str, dict[str, str]]:
    return {"error": {"type": type_ or ERROR_TYPES.get(status, "error"), "message": message}}


def error_body(status: int, message: str, type_: str | None = None) -> bytes:
    """The JSON body of an error response (also used by the raw ASGI middlewares)."""
    return json.dumps(_payload(status, message, type_)).encode()


def _response(status: int, message: str, type_: str | None = None, **headers: str) -> JSONResponse:
    return JSONResponse(_payload(status, message, type_), status_code=status, headers=headers)


def _validation_message(exc: RequestValidationError) -> str:
    parts = []
    for err in exc.errors()[:5]:
        where = ".".join(str(p) for p in err.get("loc", ()) if p != "body") or "body"
        parts.append(f"{where}: {err.get('msg', 'invalid')}")
    return "invalid request: " + "; ".join(parts)


async def _on_api_error(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, ApiError)
    extra = {"WWW-Authenticate": "Bearer"} if exc.status == 401 else {}
    return _response(exc.status, exc.message, exc.type, **extra)


async def _on_http_error(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    message = exc.detail if isinstance(exc.detail, str) else json.dumps(exc.detail)
    return _response(exc.status_code, message)


async def _on_validation(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    return _response(422, _validation_message(exc))


async def _on_image_error(_: Request, exc: Exception) -> JSONResponse:
    return _response(400, str(exc), "invalid_image")


async def _on_index_unavailable(_: Request, exc: Exception) -> JSONResponse:
    return _response(503, str(exc))


async def _on_incompatible(_: Request, exc: Exception) -> JSONResponse:
    return _response(503, str(exc), "incompatible_index")


async def _on_unexpected(_: Request, exc: Exception) -> JSONResponse:
    # The traceback goes to the server log, never to the client.
    log.exception("unhandled error", exc_info=exc)
    return _response(500, f"internal error ({type(exc).__name__}); see the server log")


def install_error_handlers(app: FastAPI) -> None:
    """Answer every error with the typed JSON body."""
    handlers: dict[Any, Any] = {
        ApiError: _on_api_error,
        StarletteHTTPException: _on_http_error,
        RequestValidationError: _on_validation,
        ImageLoadError: _on_image_error,
        IndexUnavailableError: _on_index_unavailable,
        IncompatibleIndexError: _on_incompatible,
        Exception: _on_unexpected,
    }
    for exc_type, handler in handlers.items():
        app.add_exception_handler(exc_type, handler)
