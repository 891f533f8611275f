"""The service's request and response bodies (they make the OpenAPI schema)."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field, model_validator

__all__ = [
    "ClassifyRequest",
    "ClassifyResponse",
    "EmbedResponse",
    "ErrorDetail",
    "ErrorResponse",
    "FailedItem",
    "HealthResponse",
    "Hit",
    "ImageEmbedRequest",
    "ImageEmbedResponse",
    "IndexResponse",
    "ItemError",
    "LabelScore",
    "RankRequest",
    "RankResponse",
    "SearchRequest",
    "SearchResponse",
    "TextEmbedRequest",
    "TextScore",
]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ErrorDetail(BaseModel):
    type: str = Field(description="a stable machine name, e.g. payload_too_large")
    message: str = Field(description="what went wrong and how to fix it, for people")


class ErrorResponse(BaseModel):
    error: ErrorDetail


# -- embedding ---------------------------------------------------------------------------


class TextEmbedRequest(_Strict):
    texts: list[str] = Field(min_length=1, description="the texts to embed")


class EmbedResponse(BaseModel):
    model_id: str
    dim: int
    embeddings: list[list[float]] = Field(description="one L2-normalized vector per input")


class ImageEmbedRequest(_Strict):
    """JSON form of an image embed request (multipart uploads use the `files` field)."""

    urls: list[str] = Field(default_factory=list, description="http(s) URLs (allowed hosts only)")
    images_base64: list[str] = Field(
        default_factory=list, description="base64 strings or data: URIs"
    )

    @model_validator(mode="after")
    def _some(self) -> ImageEmbedRequest:
        if not self.urls and not self.images_base64:
            raise ValueError("give urls or images_base64 (or upload files as multipart)")
        return self


class ItemError(BaseModel):
    index: int = Field(description="the failed input's position in the request")
    message: str


class ImageEmbedResponse(BaseModel):
    model_id: str
    dim: int
    embeddings: list[list[float] | None] = Field(
        description="one vector per input in order; null where the input failed (see errors)"
    )
    errors: list[ItemError] = Field(default_factory=list)


# -- one image in, plus texts -------------------------------------------------------------


class _OneImage(_Strict):
    image_base64: str | None = Field(default=None, description="a base64 string or data: URI")
    image_url: str | None = Field(default=None, description="an http(s) URL on an allowed host")

    def _image_count(self) -> int:
        return sum(x is not None for x in (self.image_base64, self.image_url))


class SearchRequest(_OneImage):
    """Search by `text`, or by an image (`image_base64` / `image_url` / a multipart `file`)."""

    text: str | None = Field(default=None, description="a text query")
    k: int = Field(default=10, ge=1, description="how many hits")
    where: dict[str, Any] | None = Field(
        default=None, description='a Chroma metadata filter, e.g. {"mime": "image/png"}'
    )


class Hit(BaseModel):
    id: str
    uri: str | None
    score: float = Field(description="cosine similarity, higher is better")
    metadata: dict[str, Any]
    document: str | None = Field(default=None, description="the text stored with the record")
    image_href: str | None = Field(
        description="where GET serves the image (/v1/images/{id}); null without a local file"
    )


class SearchResponse(BaseModel):
    model_id: str
    query_type: str = Field(description="text or image")
    hits: list[Hit]


class RankRequest(_OneImage):
    candidates: list[str] = Field(min_length=1, description="texts to score against the image")


class TextScore(BaseModel):
    text: str
    score: float = Field(description="cosine similarity of the text and the image")
    probability: float = Field(description="softmax over the candidates at the model's scale")


class RankResponse(BaseModel):
    model_id: str
    matches: list[TextScore] = Field(description="best first")


class ClassifyRequest(_OneImage):
    labels: list[str] = Field(min_length=1, description="the class names")
    templates: list[str] | None = Field(
        default=None,
        description="prompt templates with {} for the label; default: the OpenAI ensemble",
    )


class LabelScore(BaseModel):
    label: str
    probability: float


class ClassifyResponse(BaseModel):
    model_id: str
    predictions: list[LabelScore] = Field(description="most likely first")


# -- indexing and health ------------------------------------------------------------------


class FailedItem(BaseModel):
    source: str
    reason: str


class IndexResponse(BaseModel):
    added: int
    unchanged: int
    failed: list[FailedItem]
    ids: list[str | None] = Field(description="each upload's record id; null where it failed")


class HealthResponse(BaseModel):
    status: str
    model_id: str
    device: str | None
    collection: str
    index_count: int | None = Field(description="records in the collection; null if unreachable")
    index_error: str | None = None
