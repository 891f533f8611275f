"""The service's request and response bodies (they make the OpenAPI schema).

An endpoint that takes JSON or a form has a model for each: the form model adds the upload
fields (typed `UploadFile`) and reads the fields a form carries as text (`where` as JSON,
`labels` comma-separated). `inputs.RequestBody` picks one by the content type.
"""

from __future__ import annotations

from typing import Any

from fastapi import UploadFile
from pydantic import BaseModel, ConfigDict, Field, Json, field_validator, model_validator

__all__ = [
    "ClassifyForm",
    "ClassifyRequest",
    "ClassifyResponse",
    "EmbedResponse",
    "ErrorDetail",
    "ErrorResponse",
    "FailedItem",
    "HealthResponse",
    "Hit",
    "ImageEmbedForm",
    "ImageEmbedRequest",
    "ImageEmbedResponse",
    "ImageList",
    "IndexForm",
    "IndexResponse",
    "ItemError",
    "LabelScore",
    "RankForm",
    "RankRequest",
    "RankResponse",
    "SearchForm",
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


class _OneFile(_Strict):
    file: UploadFile | None = Field(default=None, description="the image, uploaded")


class _Files(_Strict):
    files: list[UploadFile] = Field(default_factory=list, description="the images, uploaded")


class ImageList(_Strict):
    """Images by URL or base64, in a JSON body or as repeated form fields."""

    urls: list[str] = Field(default_factory=list, description="http(s) URLs (allowed hosts only)")
    images_base64: list[str] = Field(
        default_factory=list, description="base64 strings or data: URIs"
    )


class ImageEmbedRequest(ImageList):
    """JSON form of an image embed request (multipart uploads use the `files` field)."""

    @model_validator(mode="after")
    def _some(self) -> ImageEmbedRequest:
        if not self.urls and not self.images_base64:
            raise ValueError("give urls or images_base64 (or upload files as multipart)")
        return self


class ImageEmbedForm(ImageList, _Files):
    """Multipart form of an image embed request: `files`, and any `urls` / `images_base64`."""


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


class SearchRequest(_OneImage):
    """Search by `text`, or by an image (`image_base64` / `image_url` / a multipart `file`)."""

    text: str | None = Field(default=None, description="a text query")
    k: int = Field(default=10, ge=1, description="how many hits")
    where: dict[str, Any] | None = Field(
        default=None, description='a Chroma metadata filter, e.g. {"mime": "image/png"}'
    )


class SearchForm(SearchRequest, _OneFile):
    """Multipart form of a search: `text` or an image (`file`, ...); `where` as JSON text."""

    where: Json[dict[str, Any]] | None = Field(
        default=None, description='a Chroma metadata filter as JSON, e.g. {"mime": "image/png"}'
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
    citation: str | None = Field(
        default=None, description='an image from a document: "report.pdf, page 7"'
    )


class SearchResponse(BaseModel):
    model_id: str
    query_type: str = Field(description="text or image")
    hits: list[Hit]


class RankRequest(_OneImage):
    candidates: list[str] = Field(min_length=1, description="texts to score against the image")


class RankForm(RankRequest, _OneFile):
    """Multipart form of a rank request: the image as `file`, `candidates` repeated."""


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


class ClassifyForm(ClassifyRequest, _OneFile):
    """Multipart form of a classify request: `labels` repeated or comma-separated."""

    @field_validator("labels", mode="before")
    @classmethod
    def _split_commas(cls, labels: Any) -> Any:
        if not isinstance(labels, list):
            return labels
        return [p.strip() for x in labels for p in str(x).split(",") if p.strip()]


class LabelScore(BaseModel):
    label: str
    probability: float


class ClassifyResponse(BaseModel):
    model_id: str
    predictions: list[LabelScore] = Field(description="most likely first")


# -- indexing and health ------------------------------------------------------------------


class IndexForm(_Files):
    """The images to add, uploaded as repeated `files`."""


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
