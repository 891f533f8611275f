"""Issue 12's server attacks, each replayed against the real app on the real demo model.

Templates, text lengths, Host and Origin checks, CORS, keep-alive after errors, slow headers,
URL parsing and cancelled work. The socket-level attacks run against a real uvicorn on a free
loopback port, started the way `clip-multimodal serve` starts it.
"""

from __future__ import annotations

import base64
import http.server
import os
import threading
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


# -- URLs: one parser, and the right status ----------------------------------------------------


class _Images(http.server.BaseHTTPRequestHandler):
    hits: list[str] = []  # noqa: RUF012 - shared by the handler instances on purpose

    def do_GET(self) -> None:
        self.hits.append(self.path)
        body = png_bytes((200, 30, 30)) if self.path == "/red.png" else b"\0" * 50_000
        self.send_response(200)
        self.send_header("Content-Type", "image/png")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture(scope="module")
def image_hosts() -> Iterator[tuple[str, str]]:
    """The same image server on 127.0.0.1 and on 127.0.0.2 (only the first is allowed)."""
    for key in list(os.environ):
        if key.lower().endswith("_proxy"):
            os.environ.pop(key)
    servers = [http.server.ThreadingHTTPServer((h, 0), _Images) for h in ("127.0.0.1", "127.0.0.2")]
    for server in servers:
        threading.Thread(target=server.serve_forever, daemon=True).start()
    yield tuple(f"http://{s.server_address[0]}:{s.server_address[1]}" for s in servers)  # type: ignore[misc]
    for server in servers:
        server.shutdown()
        server.server_close()


@pytest.fixture(scope="module")
def fetching(
    chroma: Any, demo_encoder: Any, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[TestClient]:
    app = _app(
        chroma,
        demo_encoder,
        tmp_path_factory.mktemp("fetching"),
        allowed_url_hosts=("127.0.0.1",),
        max_image_bytes=20_000,
    )
    with TestClient(app) as http_client:
        yield http_client


def test_a_url_the_parsers_read_two_ways_is_refused_unfetched(
    fetching: TestClient, image_hosts: tuple[str, str]
) -> None:
    allowed, other = image_hosts
    port = other.rsplit(":", 1)[1]
    _Images.hits.clear()
    for url in (
        f"http://127.0.0.2:{port}\\@127.0.0.1/red.png",
        f"http://127.0.0.2:{port}@127.0.0.1/red.png",
        f"http://x@127.0.0.1:{allowed.rsplit(':', 1)[1]}/red.png",
    ):
        response = fetching.post("/v1/embed/image", json={"urls": [url]})
        _error(response, 400, "bad_request")
    assert _Images.hits == []
    fine = fetching.post("/v1/embed/image", json={"urls": [f"{allowed}/red.png"]})
    assert fine.status_code == 200, fine.text
    assert _Images.hits == ["/red.png"]


def test_an_oversized_allowed_url_is_a_413_said_once(
    fetching: TestClient, image_hosts: tuple[str, str]
) -> None:
    response = fetching.post("/v1/search", json={"image_url": f"{image_hosts[0]}/big.png"})
    message = _error(response, 413, "payload_too_large")
    assert message.count("cannot load image") == 1 and "cannot fetch" not in message
