"""The HTTP endpoints. Each one parses, checks, and hands the work to `Service`.

Bodies are parsed by `RequestBody` dependencies (JSON or a form, each a pydantic model), and
every /v1 route depends on the token check first, so the OpenAPI schema is generated whole.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Annotated, Any
from urllib.parse import quote

from fastapi import APIRouter, Depends, Security
from fastapi.responses import FileResponse, Response
from fastapi.types import DecoratedCallable
from pydantic import BaseModel

from clip_multimodal.server import schemas as s
from clip_multimodal.server.deps import ServiceDep
from clip_multimodal.server.errors import ApiError
from clip_multimodal.server.inputs import Body, RequestBody, read_images
from clip_multimodal.server.security import check_token
from clip_multimodal.server.service import record_file
from clip_multimodal.server.settings import ServerSettings

if TYPE_CHECKING:
    from clip_multimodal.index import SearchHit

__all__ = ["router"]

router = APIRouter()  # open: the liveness probe
api = APIRouter(dependencies=[Security(check_token)])  # /v1: the token, when the server has one

_ERRORS: dict[int | str, dict[str, Any]] = {
    code: {"model": s.ErrorResponse, "description": text}
    for code, text in {
        400: "bad input (an undecodable image, invalid base64, a bad filter)",
        401: "missing or wrong bearer token",
        403: "a disabled feature, or a URL host not on the allowlist",
        404: "no such record or no local file",
        413: "body or image over the size limit",
        415: "a body that is neither JSON nor a form",
        422: "the body does not match the schema",
        503: "the index is unavailable",
        504: "the request timed out",
    }.items()
}

TEXT_EMBED = RequestBody(s.TextEmbedRequest, s.TextEmbedRequest)
IMAGE_EMBED = RequestBody[s.ImageList](s.ImageEmbedRequest, s.ImageEmbedForm)
SEARCH = RequestBody(s.SearchRequest, s.SearchForm)
RANK = RequestBody(s.RankRequest, s.RankForm)
CLASSIFY = RequestBody(s.ClassifyRequest, s.ClassifyForm)
INDEX = RequestBody(None, s.IndexForm)

TextEmbedBody = Annotated[Body[s.TextEmbedRequest], Depends(TEXT_EMBED.dependency())]
ImageEmbedBody = Annotated[Body[s.ImageList], Depends(IMAGE_EMBED.dependency())]
SearchBody = Annotated[Body[s.SearchRequest], Depends(SEARCH.dependency())]
RankBody = Annotated[Body[s.RankRequest], Depends(RANK.dependency())]
ClassifyBody = Annotated[Body[s.ClassifyRequest], Depends(CLASSIFY.dependency())]
IndexBody = Annotated[Body[s.IndexForm], Depends(INDEX.dependency())]


def _post(
    path: str, response: type[BaseModel], tag: str, body: RequestBody[Any], **more: Any
) -> Callable[[DecoratedCallable], DecoratedCallable]:
    """A /v1 POST route answering `response`, its request body documented from `body`."""
    return api.post(
        path,
        response_model=response,
        responses=_ERRORS,
        tags=[tag],
        openapi_extra=body.openapi(),
        **more,
    )


async def _one_image(settings: ServerSettings, body: Body[Any]) -> bytes:
    """The single image of a search/rank/classify request, from whichever field it came."""
    m = body.model
    given = [x for x in (m.image_base64, m.image_url) if x is not None]
    if len(given) + len(body.files) != 1:
        raise ApiError(400, "send exactly one image: a multipart 'file', image_base64 or image_url")
    images = await read_images(
        settings,
        body.files,
        [m.image_base64] if m.image_base64 is not None else [],
        [m.image_url] if m.image_url is not None else [],
    )
    return images[0]


def _href(hit: SearchHit) -> str | None:
    found = record_file(hit.uri, hit.metadata)
    return f"/v1/images/{quote(hit.id, safe='')}" if found is not None else None


def _citation(hit: SearchHit) -> str | None:
    provenance = hit.provenance
    return provenance.label if provenance is not None else None


@router.get("/healthz", response_model=s.HealthResponse, tags=["meta"])
async def healthz(service: ServiceDep) -> s.HealthResponse:
    """Liveness and the index's state (open without a token)."""
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


@_post("/v1/embed/text", s.EmbedResponse, "embed", TEXT_EMBED)
async def embed_text(body: TextEmbedBody, service: ServiceDep) -> s.EmbedResponse:
    """Embed texts with the text tower."""
    vectors = await service.embed_texts(body.model.texts)
    return s.EmbedResponse(
        model_id=service.encoder.model_id, dim=int(vectors.shape[1]), embeddings=vectors.tolist()
    )


@_post("/v1/embed/image", s.ImageEmbedResponse, "embed", IMAGE_EMBED)
async def embed_image(body: ImageEmbedBody, service: ServiceDep) -> s.ImageEmbedResponse:
    """Embed images: multipart `files`, or JSON `urls` / `images_base64`. A failed image
    gets null and an entry in `errors`; the others are embedded."""
    urls, b64 = body.model.urls, body.model.images_base64
    if not (body.files or urls or b64):  # JSON needs one of its lists; a form needs 'files'
        raise ApiError(400, "upload at least one image as the multipart field 'files'")
    images = await read_images(service.settings, body.files, b64, urls)
    result = await service.embed_images(images)
    rows: list[list[float] | None] = [None] * len(images)
    for row, i in enumerate(result.indices):
        rows[i] = result.vectors[row].tolist()
    errors = [s.ItemError(index=i, message=str(e)) for i, e in sorted(result.errors.items())]
    return s.ImageEmbedResponse(
        model_id=service.encoder.model_id, dim=service.encoder.dim, embeddings=rows, errors=errors
    )


@_post("/v1/search", s.SearchResponse, "search", SEARCH)
async def search(body: SearchBody, service: ServiceDep) -> s.SearchResponse:
    """Search the index by `text`, or by an image (multipart `file`, image_base64, image_url)."""
    m = body.model
    has_image = bool(body.files) or m.image_base64 is not None or m.image_url is not None
    if (m.text is not None) == has_image:
        raise ApiError(400, "search by text or by one image, not both and not neither")
    if m.text is not None:
        if not m.text.strip():
            raise ApiError(400, "the text query is empty")
        vector, query_type = (await service.embed_texts([m.text], "text"))[0], "text"
    else:
        image = await _one_image(service.settings, body)
        vector, query_type = await service.embed_image(image), "image"
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
                image_href=_href(h),
                citation=_citation(h),
            )
            for h in hits
        ],
    )


@_post("/v1/rank", s.RankResponse, "zero-shot", RANK)
async def rank(body: RankBody, service: ServiceDep) -> s.RankResponse:
    """Score candidate texts against one image, best first (like clip-as-service's rank)."""
    image = await _one_image(service.settings, body)
    ranked = await service.rank(image, body.model.candidates)
    return s.RankResponse(
        model_id=service.encoder.model_id,
        matches=[s.TextScore(text=t, score=c, probability=p) for t, c, p in ranked],
    )


@_post("/v1/classify", s.ClassifyResponse, "zero-shot", CLASSIFY)
async def classify(body: ClassifyBody, service: ServiceDep) -> s.ClassifyResponse:
    """Zero-shot classification of one image over `labels`, with prompt ensembles."""
    image = await _one_image(service.settings, body)
    ranked = await service.classify(image, body.model.labels, body.model.templates)
    return s.ClassifyResponse(
        model_id=service.encoder.model_id,
        predictions=[s.LabelScore(label=label, probability=p) for label, p in ranked],
    )


def _index_enabled(service: ServiceDep) -> None:
    if not service.settings.enable_index:  # refused before the uploads are read
        raise ApiError(403, "indexing over HTTP is disabled; start the server with --enable-index")


@_post("/v1/index", s.IndexResponse, "index", INDEX, dependencies=[Depends(_index_enabled)])
async def index_images(body: IndexBody, service: ServiceDep) -> s.IndexResponse:
    """Add uploaded images to the index (off unless the server runs with --enable-index)."""
    if not body.files:
        raise ApiError(400, "upload images as the multipart field 'files'")
    report = await service.index_uploads([(f.data, f.filename) for f in body.files])
    return s.IndexResponse(
        added=report.added,
        unchanged=report.unchanged,
        failed=[s.FailedItem(source=f.source, reason=f.reason) for f in report.failed],
        ids=report.ids,
    )


@api.get(
    "/v1/images/{image_id}",
    response_class=FileResponse,
    responses={**_ERRORS, 200: {"content": {"image/*": {}}, "description": "the image file"}},
    tags=["index"],
)
async def get_image(image_id: str, service: ServiceDep) -> Response:
    """The stored image of an index record (only files the index recorded are served; an
    image inside a document is extracted from the recorded document)."""
    found, mime = await service.image_file(image_id)
    headers = {
        "Cache-Control": "private, max-age=300",
        "Content-Security-Policy": "default-src 'none'",
    }
    if isinstance(found, bytes):
        return Response(found, media_type=mime, headers=headers)
    return FileResponse(found, media_type=mime, headers=headers, content_disposition_type="inline")


router.include_router(api)  # after every /v1 route is declared
