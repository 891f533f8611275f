"""The HTTP endpoints. Each one parses, checks, and hands the work to `Service`."""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

from fastapi import APIRouter, Request
from fastapi.responses import FileResponse
from pydantic import BaseModel

from clip_multimodal.server import schemas as s
from clip_multimodal.server.errors import ApiError
from clip_multimodal.server.inputs import Body, parse_body, read_images
from clip_multimodal.server.service import Service, local_file

__all__ = ["router"]

router = APIRouter()

_ERRORS: dict[int | str, dict[str, Any]] = {
    code: {"model": s.ErrorResponse, "description": text}
    for code, text in {
        400: "bad input (an undecodable image, invalid base64, a bad filter)",
        401: "missing or wrong bearer token",
        403: "a disabled feature, or a URL host not on the allowlist",
        404: "no such record or no local file",
        413: "body or image over the size limit",
        422: "the body does not match the schema",
        503: "the index is unavailable",
        504: "the request timed out",
    }.items()
}

_FILE = {"type": "string", "format": "binary"}


class _NoFields(BaseModel):
    """A multipart body that carries only files."""


def _body_doc(model: type[BaseModel], form: dict[str, Any]) -> dict[str, Any]:
    """OpenAPI for a body sent as JSON (the model) or as a multipart form."""
    return {
        "requestBody": {
            "required": True,
            "content": {
                "application/json": {"schema": model.model_json_schema()},
                "multipart/form-data": {"schema": {"type": "object", "properties": form}},
            },
        }
    }


def _service(request: Request) -> Service:
    service: Service = request.app.state.service
    return service


async def _parse(request: Request, model: type[BaseModel]) -> Body:
    return await parse_body(request, model, _service(request).settings)


async def _one_image(request: Request, body: Body) -> bytes:
    """The single image of a search/rank/classify request, from whichever field it came."""
    m = body.model
    given = [x for x in (m.image_base64, m.image_url) if x is not None]
    if len(given) + len(body.files) != 1:
        raise ApiError(400, "send exactly one image: a multipart 'file', image_base64 or image_url")
    images = await read_images(
        _service(request).settings,
        body.files,
        [m.image_base64] if m.image_base64 is not None else [],
        [m.image_url] if m.image_url is not None else [],
    )
    return images[0]


def _href(hit_id: str, uri: str | None) -> str | None:
    return f"/v1/images/{quote(hit_id, safe='')}" if local_file(uri) is not None else None


@router.get("/healthz", response_model=s.HealthResponse, tags=["meta"])
async def healthz(request: Request) -> s.HealthResponse:
    """Liveness and the index's state (open without a token)."""
    service = _service(request)
    count, error = None, None
    try:
        count = await service.count()
    except Exception as exc:  # health reports the problem instead of failing
        error = str(exc)
    device = getattr(service.encoder, "device", None)
    return s.HealthResponse(
        status="ok" if error is None else "degraded",
        model_id=service.encoder.model_id,
        device=str(device) if device is not None else None,
        collection=service.settings.collection,
        index_count=count,
        index_error=error,
    )


@router.post(
    "/v1/embed/text",
    response_model=s.EmbedResponse,
    responses=_ERRORS,
    tags=["embed"],
    openapi_extra=_body_doc(s.TextEmbedRequest, {"texts": {"type": "array", "items": {}}}),
)
async def embed_text(request: Request) -> s.EmbedResponse:
    """Embed texts with the text tower."""
    body = await _parse(request, s.TextEmbedRequest)
    service = _service(request)
    vectors = await service.embed_texts(body.model.texts)
    return s.EmbedResponse(
        model_id=service.encoder.model_id, dim=int(vectors.shape[1]), embeddings=vectors.tolist()
    )


@router.post(
    "/v1/embed/image",
    response_model=s.ImageEmbedResponse,
    responses=_ERRORS,
    tags=["embed"],
    openapi_extra=_body_doc(s.ImageEmbedRequest, {"files": {"type": "array", "items": _FILE}}),
)
async def embed_image(request: Request) -> s.ImageEmbedResponse:
    """Embed images: multipart `files`, or JSON `urls` / `images_base64`. A failed image
    gets null and an entry in `errors`; the others are embedded."""
    service = _service(request)
    ctype = request.headers.get("content-type", "")
    if ctype.startswith("multipart/form-data"):
        body = await parse_body(request, _NoFields, service.settings)
        if not body.files:
            raise ApiError(400, "upload at least one image as the multipart field 'files'")
        urls: list[str] = []
        b64: list[str] = []
    else:
        body = await _parse(request, s.ImageEmbedRequest)
        urls, b64 = body.model.urls, body.model.images_base64
    images = await read_images(service.settings, body.files, b64, urls)
    result = await service.embed_images(images)
    rows: list[list[float] | None] = [None] * len(images)
    for row, i in enumerate(result.indices):
        rows[i] = result.vectors[row].tolist()
    errors = [s.ItemError(index=i, message=str(e)) for i, e in sorted(result.errors.items())]
    return s.ImageEmbedResponse(
        model_id=service.encoder.model_id, dim=service.encoder.dim, embeddings=rows, errors=errors
    )


@router.post(
    "/v1/search",
    response_model=s.SearchResponse,
    responses=_ERRORS,
    tags=["search"],
    openapi_extra=_body_doc(
        s.SearchRequest,
        {"text": {"type": "string"}, "file": _FILE, "k": {"type": "integer"}, "where": {}},
    ),
)
async def search(request: Request) -> s.SearchResponse:
    """Search the index by `text`, or by an image (multipart `file`, image_base64, image_url)."""
    body = await _parse(request, s.SearchRequest)
    service = _service(request)
    m = body.model
    has_image = bool(body.files) or m.image_base64 is not None or m.image_url is not None
    if (m.text is not None) == has_image:
        raise ApiError(400, "search by text or by one image, not both and not neither")
    if m.text is not None:
        if not m.text.strip():
            raise ApiError(400, "the text query is empty")
        vector, query_type = (await service.embed_texts([m.text], "text"))[0], "text"
    else:
        vector, query_type = await service.embed_image(await _one_image(request, body)), "image"
    hits = await service.search(vector, m.k, m.where)
    return s.SearchResponse(
        model_id=service.encoder.model_id,
        query_type=query_type,
        hits=[
            s.Hit(
                id=h.id,
                uri=h.uri,
                score=h.score,
                metadata=dict(h.metadata),
                document=h.document,
                image_href=_href(h.id, h.uri),
            )
            for h in hits
        ],
    )


@router.post(
    "/v1/rank",
    response_model=s.RankResponse,
    responses=_ERRORS,
    tags=["zero-shot"],
    openapi_extra=_body_doc(
        s.RankRequest, {"file": _FILE, "candidates": {"type": "array", "items": {}}}
    ),
)
async def rank(request: Request) -> s.RankResponse:
    """Score candidate texts against one image, best first (like clip-as-service's rank)."""
    body = await _parse(request, s.RankRequest)
    service = _service(request)
    image = await _one_image(request, body)
    ranked = await service.rank(image, body.model.candidates)
    return s.RankResponse(
        model_id=service.encoder.model_id,
        matches=[s.TextScore(text=t, score=c, probability=p) for t, c, p in ranked],
    )


@router.post(
    "/v1/classify",
    response_model=s.ClassifyResponse,
    responses=_ERRORS,
    tags=["zero-shot"],
    openapi_extra=_body_doc(
        s.ClassifyRequest,
        {
            "file": _FILE,
            "labels": {"type": "string", "description": "comma-separated, or repeated"},
            "templates": {"type": "array", "items": {}},
        },
    ),
)
async def classify(request: Request) -> s.ClassifyResponse:
    """Zero-shot classification of one image over `labels`, with prompt ensembles."""
    body = await _parse(request, s.ClassifyRequest)
    service = _service(request)
    image = await _one_image(request, body)
    ranked = await service.classify(image, body.model.labels, body.model.templates)
    return s.ClassifyResponse(
        model_id=service.encoder.model_id,
        predictions=[s.LabelScore(label=label, probability=p) for label, p in ranked],
    )


@router.post(
    "/v1/index",
    response_model=s.IndexResponse,
    responses=_ERRORS,
    tags=["index"],
    openapi_extra=_body_doc(_NoFields, {"files": {"type": "array", "items": _FILE}}),
)
async def index_images(request: Request) -> s.IndexResponse:
    """Add uploaded images to the index (off unless the server runs with --enable-index)."""
    service = _service(request)
    if not service.settings.enable_index:
        raise ApiError(403, "indexing over HTTP is disabled; start the server with --enable-index")
    body = await parse_body(request, _NoFields, service.settings)
    if not body.files:
        raise ApiError(400, "upload images as the multipart field 'files'")
    report = await service.index_uploads([(f.data, f.filename) for f in body.files])
    return s.IndexResponse(
        added=report.added,
        unchanged=report.unchanged,
        failed=[s.FailedItem(source=f.source, reason=f.reason) for f in report.failed],
        ids=report.ids,
    )


@router.get(
    "/v1/images/{image_id}",
    response_class=FileResponse,
    responses={**_ERRORS, 200: {"content": {"image/*": {}}, "description": "the image file"}},
    tags=["index"],
)
async def get_image(request: Request, image_id: str) -> FileResponse:
    """The stored image of an index record (only files the index recorded are served)."""
    path, mime = await _service(request).image_file(image_id)
    headers = {
        "Cache-Control": "private, max-age=300",
        "Content-Security-Policy": "default-src 'none'",
    }
    return FileResponse(path, media_type=mime, headers=headers, content_disposition_type="inline")
