"""The service's settings: one frozen object, built by `clip-multimodal serve` or by hand.

It is a pydantic dataclass, so every value is checked here, once, by its declared type and
bounds; a bad value raises `pydantic.ValidationError` (a `ValueError`) naming the field.
"""

from __future__ import annotations

from dataclasses import field
from pathlib import Path
from typing import Annotated

from pydantic import Field, field_validator
from pydantic.dataclasses import dataclass

from clip_multimodal.images import DEFAULT_MAX_DECODE_BYTES
from clip_multimodal.models import DEMO_MODEL, ModelSpec, Precision

__all__ = ["ServerSettings"]

MiB = 2**20
#: The model served when none is named: the bundled demo model.
DEFAULT_MODEL_SPEC = ModelSpec(DEMO_MODEL)

Limit = Annotated[int, Field(ge=1)]
Seconds = Annotated[float, Field(gt=0)]


@dataclass(frozen=True)
class ServerSettings:
    """How the service runs. Every limit has a safe default.

    Attributes:
        model_spec: the model served, on its device, precision and batch size (default: the
            bundled demo model, device and precision `auto`).
        model, pretrained, device, precision: a shorthand for `model_spec`, as older
            versions took it (model None: the demo model; device and precision None: `auto`,
            which on the CPU is bf16 where it runs natively and faster); not both.
        data_dir: where the embedded Chroma lives (`data_dir/chroma`); None: the default
            data dir (`CLIP_MULTIMODAL_DATA_DIR` or the per-user data folder).
        collection: the Chroma collection searched and served.
        chroma_host: a Chroma server's host (with `chroma_port`) instead of embedded Chroma.
        chroma_port: the Chroma server's port.
        token: when set, every /v1 request needs `Authorization: Bearer <token>`.
        enable_index: allow POST /v1/index (uploads are written under `data_dir/uploads`).
        allowed_url_hosts: host names images may be fetched from; empty: URL fetching is off.
        allowed_hosts: Host header names accepted besides localhost, loopback addresses and
            the address a connection arrives at (`*`: any, e.g. behind a checking proxy).
        allowed_origins: web origins (`https://app.example.com`) whose pages may call the
            API across sites; they alone get CORS headers. Empty: same-origin only.
        max_image_bytes: the cap on one uploaded, base64 or fetched image.
        max_decode_bytes: the decode budget: an image whose decoding would need more memory
            (estimated from its header) is refused with 413 before it is decoded.
        max_body_bytes: the cap on a whole request body.
        max_items: the most texts or images in one request.
        max_text_chars: the longest text field (a text, label, candidate or template); the
            model reads only 77 tokens, and the library cuts longer texts anyway.
        max_k: the most hits one search may ask for.
        request_timeout_s: a request still running after this gets 504.
        url_timeout_s: the time allowed to fetch one URL.
        max_batch: the most items in one shared forward pass (1: no batching).
        batch_wait_ms: how long the first request of a batch waits for others.
        header_timeout_s: a connection that has not sent a request's headers this long after
            it opened (or after its last response) is closed.
    """

    model: str | None = None
    pretrained: str | None = None
    device: str | None = None
    precision: Precision | None = None
    data_dir: Path | None = None
    collection: str = "images"
    chroma_host: str | None = None
    chroma_port: int | None = None
    token: str | None = None
    enable_index: bool = False
    allowed_url_hosts: tuple[str, ...] = field(default=())
    allowed_hosts: tuple[str, ...] = field(default=())
    allowed_origins: tuple[str, ...] = field(default=())
    max_image_bytes: Limit = 10 * MiB
    max_decode_bytes: Limit = DEFAULT_MAX_DECODE_BYTES
    max_body_bytes: Limit = 32 * MiB
    max_items: Limit = 256
    max_text_chars: Limit = 10_000
    max_k: Limit = 100
    request_timeout_s: Seconds = 30.0
    url_timeout_s: Seconds = 10.0
    max_batch: Limit = 32
    batch_wait_ms: Annotated[float, Field(ge=0)] = 5.0
    header_timeout_s: Seconds = 10.0
    model_spec: ModelSpec = DEFAULT_MODEL_SPEC

    def __post_init__(self) -> None:
        object.__setattr__(self, "model_spec", self._spec_from_fields())

    @field_validator("allowed_url_hosts")
    @classmethod
    def _host_names(cls, hosts: tuple[str, ...]) -> tuple[str, ...]:
        return tuple(h.strip().lower() for h in hosts if h.strip())

    @field_validator("allowed_origins")
    @classmethod
    def _origins(cls, origins: tuple[str, ...]) -> tuple[str, ...]:
        # Browsers send an origin as scheme://host[:port], lower case, without a slash.
        return tuple(o.strip().rstrip("/").lower() for o in origins if o.strip())

    def _spec_from_fields(self) -> ModelSpec:
        """`model_spec`, or the spec the shorthand fields describe (validated alike)."""
        flat_fields = (self.model, self.pretrained, self.device, self.precision)
        if all(value is None for value in flat_fields):
            return self.model_spec
        device = "auto" if self.device is None else self.device
        precision = self.precision or "auto"
        flat = ModelSpec(self.model or DEMO_MODEL, self.pretrained, device, precision)
        if self.model_spec not in (DEFAULT_MODEL_SPEC, flat):
            raise ValueError("give model_spec or the model, pretrained and device fields, not both")
        return flat

    def resolved_data_dir(self) -> Path:
        """`data_dir`, or the default data dir."""
        if self.data_dir is not None:
            return Path(self.data_dir).expanduser()
        from clip_multimodal.index import default_data_dir

        return default_data_dir()
