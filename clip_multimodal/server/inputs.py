"""Turning request bodies into checked inputs: JSON or a form, and images as bytes.

An endpoint declares its body as a `RequestBody`: a pydantic model for JSON and one for a
multipart (or urlencoded) form. Its `dependency` is the FastAPI dependency that parses a request
by its content type, and its `openapi` documents both from the models' own schemas.

Every image reaches the model as bytes that this module produced: an upload, decoded base64,
or a fetched URL. A string from a request is never handed to `load_image`, which would read a
server path if the string named one.
"""

from __future__ import annotations

import asyncio
import types
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar, Union, get_args, get_origin

from pydantic import BaseModel, ValidationError
from starlette.datastructures import UploadFile
from starlette.requests import Request

from clip_multimodal.errors import ImageLoadError
from clip_multimodal.server.deps import SettingsDep
from clip_multimodal.server.errors import ApiError
from clip_multimodal.server.settings import ServerSettings

__all__ = [
    "Body",
    "RequestBody",
    "Upload",
    "check_decode_budget",
    "check_url",
    "decode_base64",
    "fetch_image",
    "read_images",
]

M = TypeVar("M", bound=BaseModel)

_JSON, _FORMS = "application/json", ("multipart/form-data", "application/x-www-form-urlencoded")


@dataclass
class Upload:
    """An uploaded file's bytes and its client-side name (for messages and metadata only)."""

    data: bytes
    filename: str


@dataclass
class Body(Generic[M]):
    """A parsed request: the validated model plus any uploaded files, read and size-checked."""

    model: M
    files: list[Upload] = field(default_factory=list)


@dataclass(frozen=True)
class RequestBody(Generic[M]):
    """An endpoint's body: `json` for application/json (None: forms only), `form` for forms.

    A form field is a list when the form model's field is one (repeat the field to send
    several), and an upload is accepted only in a field the form model types `UploadFile`.
    """

    json: type[M] | None
    form: type[M]

    def dependency(self) -> Callable[[Request, ServerSettings], Awaitable[Body[M]]]:
        """The FastAPI dependency that parses a request into `Body[M]`."""

        async def parse_body(request: Request, settings: SettingsDep) -> Body[M]:
            return await self.parse(request, settings)

        return parse_body

    def openapi(self) -> dict[str, Any]:
        """`openapi_extra` declaring both media types, with the models' generated schemas."""
        content = {"multipart/form-data": {"schema": self.form.model_json_schema()}}
        if self.json is not None:
            content = {_JSON: {"schema": self.json.model_json_schema()}, **content}
        return {"requestBody": {"required": True, "content": content}}

    async def parse(self, request: Request, settings: ServerSettings) -> Body[M]:
        """Read a JSON body into `json`, or a form (fields plus uploads) into `form`."""
        ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
        if ctype in _FORMS:
            return await self._parse_form(request, settings)
        if self.json is None or ctype not in (_JSON, ""):
            accepted = " or ".join([_JSON, _FORMS[0]] if self.json is not None else [_FORMS[0]])
            raise ApiError(415, f"send {accepted}, not {ctype or 'a body without a type'}")
        raw = await request.body()
        if not raw:
            raise ApiError(400, "the request body is empty; send JSON or a multipart form")
        return Body(_validate(self.json, raw, from_json=True))

    async def _parse_form(self, request: Request, settings: ServerSettings) -> Body[M]:
        fields = self.form.model_fields
        lists = {name for name, f in fields.items() if _is_list(f.annotation)}
        file_fields = [name for name, f in fields.items() if _holds_files(f.annotation)]
        limits = {"max_files": settings.max_items, "max_fields": settings.max_items + 16}
        async with request.form(**limits) as form:
            data: dict[str, Any] = {}
            uploads: list[UploadFile] = []
            for key, value in form.multi_items():
                if isinstance(value, UploadFile):
                    if key not in file_fields:
                        where = " or ".join(repr(f) for f in file_fields) or "no field"
                        raise ApiError(400, f"unexpected file field {key!r}; upload as {where}")
                    uploads.append(value)
                elif not value:  # an empty form field is an absent one
                    continue
                if key in lists:
                    data.setdefault(key, []).append(value)
                else:
                    data[key] = value
            model = _validate(self.form, data, from_json=False)
            cap = settings.max_image_bytes
            files = [await _read_upload(u, i, cap) for i, u in enumerate(uploads)]
        return Body(model, files)


def _members(annotation: Any) -> tuple[Any, ...]:
    """The alternatives of a union annotation (`X | None`), or the annotation itself."""
    union = get_origin(annotation) in (Union, types.UnionType)
    return get_args(annotation) if union else (annotation,)


def _is_list(annotation: Any) -> bool:
    return any(get_origin(m) is list for m in _members(annotation))


def _holds_files(annotation: Any) -> bool:
    def is_file(t: Any) -> bool:
        return isinstance(t, type) and issubclass(t, UploadFile)

    return any(
        is_file(m) or (get_origin(m) is list and any(map(is_file, get_args(m))))
        for m in _members(annotation)
    )


def _validate(model: type[M], data: Any, *, from_json: bool) -> M:
    from fastapi.exceptions import RequestValidationError

    try:
        if from_json:
            return model.model_validate_json(data)
        return model.model_validate(data)
    except ValidationError as exc:
        errors = [{**e, "loc": ("body", *e["loc"])} for e in exc.errors(include_url=False)]
        raise RequestValidationError(errors) from exc


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
