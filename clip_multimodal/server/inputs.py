"""Turning request bodies into checked inputs: JSON or multipart, and images as bytes.

Every image reaches the model as bytes that this module produced: an upload, decoded base64,
or a fetched URL. A string from a request is never handed to `load_image`, which would read a
server path if the string named one.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError
from starlette.datastructures import UploadFile
from starlette.requests import Request

from clip_multimodal.errors import ImageLoadError
from clip_multimodal.server.errors import ApiError
from clip_multimodal.server.settings import ServerSettings

__all__ = [
    "Body",
    "Upload",
    "check_decode_budget",
    "check_url",
    "decode_base64",
    "fetch_image",
    "parse_body",
    "read_images",
]

M = TypeVar("M", bound=BaseModel)

#: Form fields that carry lists; `labels` may also be one comma-separated field.
LIST_FIELDS = frozenset({"texts", "urls", "images_base64", "candidates", "labels", "templates"})
JSON_FIELDS = frozenset({"where"})
FILE_FIELDS = ("file", "files", "image")


@dataclass
class Upload:
    """An uploaded file's bytes and its client-side name (for messages and metadata only)."""

    data: bytes
    filename: str


@dataclass
class Body:
    """A parsed request: the validated model plus any uploaded files."""

    model: Any
    files: list[Upload] = field(default_factory=list)


def _validate(model: type[M], data: Any, *, from_json: bool) -> M:
    from fastapi.exceptions import RequestValidationError

    try:
        if from_json:
            return model.model_validate_json(data)
        return model.model_validate(data)
    except ValidationError as exc:
        errors = [{**e, "loc": ("body", *e["loc"])} for e in exc.errors(include_url=False)]
        raise RequestValidationError(errors) from exc


async def parse_body(request: Request, model: type[M], settings: ServerSettings) -> Body:
    """Read a JSON body, or a form (fields plus any uploaded files), into `model`."""
    ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if ctype in ("multipart/form-data", "application/x-www-form-urlencoded"):
        return await _parse_form(request, model, settings)
    if ctype not in ("application/json", ""):
        raise ApiError(415, f"send application/json or multipart/form-data, not {ctype}")
    raw = await request.body()
    if not raw:
        raise ApiError(400, "the request body is empty; send JSON or a multipart form")
    return Body(_validate(model, raw, from_json=True))


async def _parse_form(request: Request, model: type[M], settings: ServerSettings) -> Body:
    async with request.form(
        max_files=settings.max_items, max_fields=settings.max_items + 16
    ) as form:
        data: dict[str, Any] = {}
        files: list[Upload] = []
        for key, value in form.multi_items():
            if isinstance(value, UploadFile):
                if key not in FILE_FIELDS:
                    raise ApiError(400, f"unexpected file field {key!r}; upload as 'file'")
                files.append(await _read_upload(value, len(files), settings.max_image_bytes))
            else:
                _add_field(data, key, value)
    return Body(_validate(model, data, from_json=False), files)


def _add_field(data: dict[str, Any], key: str, value: str) -> None:
    if key in LIST_FIELDS:
        parts = [p.strip() for p in value.split(",")] if key == "labels" else [value]
        data.setdefault(key, []).extend(p for p in parts if p)
    elif key in JSON_FIELDS:
        try:
            data[key] = json.loads(value) if value.strip() else None
        except json.JSONDecodeError as exc:
            raise ApiError(400, f"form field {key!r} is not valid JSON ({exc.msg})") from exc
    else:
        data[key] = value


async def _read_upload(upload: UploadFile, position: int, cap: int) -> Upload:
    data = await upload.read(cap + 1)
    name = upload.filename or f"upload-{position}"
    if len(data) > cap:
        raise ApiError(413, f"uploaded file {name!r} exceeds the {cap} byte image limit")
    if not data:
        raise ApiError(400, f"uploaded file {name!r} is empty")
    return Upload(data, name)


def decode_base64(text: str, position: int, cap: int) -> bytes:
    """Decode a base64 string or data: URI, refusing anything over `cap` bytes."""
    from clip_multimodal.images import decode_base64 as decode

    try:
        data = decode(text, max_bytes=cap, desc=f"image {position}")
    except ImageLoadError as exc:
        if exc.reason.startswith("too large"):
            raise ApiError(413, f"image {position} exceeds the {cap} byte image limit") from exc
        raise ApiError(400, f"image {position}: {exc.reason}") from exc
    if not data:
        raise ApiError(400, f"image {position}: the base64 string is empty")
    return data


def check_url(url: str, settings: ServerSettings) -> None:
    """403 unless URL fetching is enabled and the URL's host is on the allowlist; 400 for a
    URL the parsers could read two ways (the same check `fetch_url` makes)."""
    from clip_multimodal.access import AccessDeniedError, AccessPolicy, parse_url

    allowed = settings.allowed_url_hosts
    if not allowed:
        raise ApiError(
            403, "URL fetching is disabled on this server; upload the image or send it as base64"
        )
    try:
        parse_url(url)
    except AccessDeniedError as exc:
        raise ApiError(400, str(exc)) from exc
    try:
        AccessPolicy(url_hosts=allowed).check_url(url)
    except AccessDeniedError as exc:
        raise ApiError(403, str(exc)) from exc


async def fetch_image(url: str, settings: ServerSettings) -> bytes:
    """Fetch an image from an allowed host, with the image size cap and the URL timeout."""
    from clip_multimodal.images import fetch_url

    check_url(url, settings)
    try:
        return await asyncio.to_thread(
            fetch_url,
            url,
            max_bytes=settings.max_image_bytes,
            timeout=settings.url_timeout_s,
            allowed_hosts=settings.allowed_url_hosts,
        )
    except ImageLoadError as exc:
        status = 413 if exc.reason.startswith("too large") else 400
        raise ApiError(status, str(exc)) from exc


async def read_images(
    settings: ServerSettings,
    files: Sequence[Upload] = (),
    images_base64: Sequence[str] = (),
    urls: Sequence[str] = (),
) -> list[bytes]:
    """Every image of a request as bytes, in the order files, base64, URLs."""
    total = len(files) + len(images_base64) + len(urls)
    if total > settings.max_items:
        raise ApiError(400, f"{total} images in one request; the limit is {settings.max_items}")
    cap = settings.max_image_bytes
    out = [f.data for f in files]
    out += [decode_base64(b, len(out) + i, cap) for i, b in enumerate(images_base64)]
    for url in urls:  # check them all before fetching any
        check_url(url, settings)
    out += await asyncio.gather(*(fetch_image(u, settings) for u in urls))
    await asyncio.to_thread(_check_decode_budgets, out, settings)  # header parses: off the loop
    return out


def _check_decode_budgets(images: Sequence[bytes], settings: ServerSettings) -> None:
    for position, data in enumerate(images):
        check_decode_budget(data, position, settings)


def check_decode_budget(data: bytes, position: int, settings: ServerSettings) -> None:
    """413 if decoding the image would need more memory than the server's decode budget.

    Judged from the header alone, so a small file that decodes to gigabytes never reaches
    a decoder. A header that is not an image's is left to the encoder, which reports it
    per item.
    """
    from clip_multimodal.images import read_header

    try:
        cost = read_header(data, max_decode_bytes=None).decode_cost
    except ImageLoadError:  # not an image, or over the pixel cap: the encoder says which
        return
    budget = settings.max_decode_bytes
    if cost > budget:
        raise ApiError(
            413,
            f"image {position} would need about {cost // 2**20} MiB to decode; this "
            f"server's decode budget is {budget // 2**20} MiB (--max-decode-mb)",
        )
