"""Issue 12's server attacks, each replayed against the real app on the real demo model.

Templates, text lengths, Host and Origin checks, CORS, keep-alive after errors, slow headers,
URL parsing and cancelled work. The socket-level attacks run against a real uvicorn on a free
loopback port, started the way `clip-multimodal serve` starts it.
"""

from __future__ import annotations

import base64
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import chromadb
import pytest
from fastapi.testclient import TestClient

from clip_multimodal.server import ServerSettings, create_app
from tests.server_helpers import png_bytes

IMAGE = base64.b64encode(png_bytes((200, 30, 30))).decode()


def _name() -> str:
    return f"hard-{uuid.uuid4().hex[:12]}"


@pytest.fixture(scope="module")
def chroma(tmp_path_factory: pytest.TempPathFactory) -> Any:
    return chromadb.PersistentClient(path=str(tmp_path_factory.mktemp("hardening-chroma")))


def _app(chroma: Any, encoder: Any, data_dir: Path, **settings: Any) -> Any:
    config = ServerSettings(collection=_name(), data_dir=data_dir, **settings)
    return create_app(config, encoder=encoder, client=chroma)


@pytest.fixture(scope="module")
def api(
    chroma: Any, demo_encoder: Any, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[TestClient]:
    app = _app(chroma, demo_encoder, tmp_path_factory.mktemp("hardening-data"), enable_index=True)
    with TestClient(app) as http:
        yield http


def _error(response: Any, status: int, type_: str) -> str:
    assert response.status_code == status, response.text
    assert response.json()["error"]["type"] == type_, response.text
    return str(response.json()["error"]["message"])


# -- templates are never formatted ------------------------------------------------------------


@pytest.mark.parametrize(
    "templates",
    [["{}{}"], ["{} {x}"], ["{{}}{:>50000000}"] * 4, ["{{}}{:>50000000}"] * 100, ["{0}"]],
    ids=["two", "named", "bomb-x4", "bomb-x100", "positional"],
)
def test_a_format_like_template_is_a_422(api: TestClient, templates: list[str]) -> None:
    started = time.perf_counter()
    response = api.post(
        "/v1/classify", json={"image_base64": IMAGE, "labels": ["a", "b"], "templates": templates}
    )
    assert "exactly one {}" in _error(response, 422, "validation_error")
    assert time.perf_counter() - started < 2.0


def test_a_plain_template_still_classifies(api: TestClient) -> None:
    body = {"image_base64": IMAGE, "labels": ["red", "blue"], "templates": ["a {} square"]}
    response = api.post("/v1/classify", json=body)
    assert response.status_code == 200, response.text
    assert {p["label"] for p in response.json()["predictions"]} == {"red", "blue"}


# -- long texts --------------------------------------------------------------------------------

LONG = "a red circle " * 1000  # 13,000 characters: over the 10,000 default


@pytest.mark.parametrize(
    ("path", "body", "field"),
    [
        ("/v1/embed/text", {"texts": ["ok", LONG]}, "texts[1]"),
        ("/v1/search", {"text": LONG}, "text[0]"),
        ("/v1/rank", {"image_base64": IMAGE, "candidates": [LONG]}, "candidates[0]"),
        ("/v1/classify", {"image_base64": IMAGE, "labels": ["x", LONG]}, "labels[1]"),
        (
            "/v1/classify",
            {"image_base64": IMAGE, "labels": ["x"], "templates": [LONG + "{}"]},
            "templates[0]",
        ),
    ],
)
def test_an_overlong_text_field_is_a_422_naming_it(
    api: TestClient, path: str, body: dict[str, Any], field: str
) -> None:
    assert field in _error(api.post(path, json=body), 422, "validation_error")


@pytest.mark.filterwarnings("ignore:.*were truncated:UserWarning")
def test_long_texts_under_the_cap_are_cheap(api: TestClient) -> None:
    texts = ["a red circle and a blue square " * 320 + str(i) for i in range(256)]  # 9.9k each
    started = time.perf_counter()
    response = api.post("/v1/embed/text", json={"texts": texts})
    elapsed = time.perf_counter() - started
    assert response.status_code == 200, response.text
    assert len(response.json()["embeddings"]) == 256
    assert elapsed < 15.0, f"{elapsed:.1f}s"
