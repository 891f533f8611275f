"""Issue 12's server attacks, each replayed against the real app on the real demo model.

Templates, text lengths, Host and Origin checks, CORS, keep-alive after errors, slow headers,
URL parsing and cancelled work. The socket-level attacks run against a real uvicorn on a free
loopback port, started the way `clip-multimodal serve` starts it.
"""

from __future__ import annotations

import base64
import http.client
import http.server
import socket
import threading
import time
import uuid
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import chromadb
import numpy as np
import pytest
from fastapi.testclient import TestClient

from clip_multimodal.server import ServerSettings, create_app
from clip_multimodal.testing import FakeEncoder
from tests.server_helpers import ImageHandler, png_bytes, running_server, without_proxies

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


class _Images(ImageHandler):
    hits: list[str] = []  # noqa: RUF012 - shared by the handler instances on purpose

    def do_GET(self) -> None:
        self.hits.append(self.path)
        body = png_bytes((200, 30, 30)) if self.path == "/red.png" else b"\0" * 50_000
        self.send_body(body)


@pytest.fixture(scope="module")
def image_hosts() -> Iterator[tuple[str, str]]:
    """The same image server on 127.0.0.1 and on 127.0.0.2 (only the first is allowed)."""
    with without_proxies():
        servers = [
            http.server.ThreadingHTTPServer((h, 0), _Images) for h in ("127.0.0.1", "127.0.0.2")
        ]
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


# -- Host and Origin ------------------------------------------------------------------------------

BASE = "http://127.0.0.1:8000"


@pytest.fixture(scope="module")
def local(
    chroma: Any, demo_encoder: Any, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[TestClient]:
    """The app as a loopback server sees it: requests arrive at 127.0.0.1:8000."""
    app = _app(chroma, demo_encoder, tmp_path_factory.mktemp("local"), enable_index=True)
    with TestClient(app, base_url=BASE) as http_client:
        yield http_client


@pytest.mark.parametrize(
    "host",
    [
        "evil.example",
        "evil.example:8000",
        "127.0.0.1.evil.example",
        "localhost.evil.example:8000",
        "localhost@evil.example",
        "evil.example/localhost",
        "",
        "[::2]:8000",
    ],
)
def test_a_foreign_host_header_is_refused(local: TestClient, host: str) -> None:
    for response in (
        local.get("/healthz", headers={"host": host}),
        local.get("/", headers={"host": host}),
        local.post("/v1/search", json={"text": "x"}, headers={"host": host}),
    ):
        assert "not a name of this server" in _error(response, 403, "forbidden")


@pytest.mark.parametrize(
    "host", ["127.0.0.1:8000", "localhost:8000", "LOCALHOST", "[::1]:8000", "127.0.0.2"]
)
def test_loopback_names_and_the_bound_address_are_accepted(local: TestClient, host: str) -> None:
    assert local.get("/healthz", headers={"host": host}).status_code == 200


def test_extra_host_names_are_configurable(chroma: Any, demo_encoder: Any, tmp_path: Path) -> None:
    app = _app(chroma, demo_encoder, tmp_path, allowed_hosts=("photos.lan",))
    with TestClient(app, base_url=BASE) as http_client:
        assert http_client.get("/healthz", headers={"host": "photos.lan:8000"}).status_code == 200
        _error(http_client.get("/healthz", headers={"host": "evil.example"}), 403, "forbidden")
    anything = _app(chroma, demo_encoder, tmp_path, allowed_hosts=("*",))
    with TestClient(anything, base_url=BASE) as http_client:
        assert http_client.get("/healthz", headers={"host": "evil.example"}).status_code == 200


def _upload() -> dict[str, Any]:
    return {"files": [("files", ("x.png", png_bytes((10, 200, 10)), "image/png"))]}


CROSS = [
    {"origin": "http://evil.example"},
    {"origin": "http://127.0.0.1:9999"},  # another port is another origin
    {"origin": "https://127.0.0.1:8000"},
    {"origin": "null"},
    {"sec-fetch-site": "cross-site"},
    {"origin": "http://evil.example", "sec-fetch-site": "same-origin"},
]


@pytest.mark.parametrize("headers", CROSS)
def test_a_cross_origin_post_is_refused_before_it_does_anything(
    local: TestClient, headers: dict[str, str]
) -> None:
    count = local.get("/healthz").json()["index_count"]
    response = local.post("/v1/index", headers=headers, **_upload())
    assert "cross-origin" in _error(response, 403, "forbidden")
    assert local.get("/healthz").json()["index_count"] == count
    response = local.post("/v1/search", json={"text": "x"}, headers=headers)
    _error(response, 403, "forbidden")
    assert "access-control-allow-origin" not in response.headers


def test_same_origin_and_non_browser_posts_pass(local: TestClient) -> None:
    for headers in (
        {"origin": "http://127.0.0.1:8000"},
        {"origin": "http://127.0.0.1:8000", "sec-fetch-site": "same-origin"},
        {"origin": "http://localhost:8000", "host": "localhost:8000"},
        {},  # curl, scripts: no Origin
    ):
        response = local.post("/v1/search", json={"text": "x", "k": 1}, headers=headers)
        assert response.status_code == 200, (headers, response.text)
    assert local.post("/v1/index", headers={"origin": BASE}, **_upload()).status_code == 200


def test_a_configured_origin_may_post_and_alone_gets_cors_headers(
    chroma: Any, demo_encoder: Any, tmp_path: Path
) -> None:
    app = _app(chroma, demo_encoder, tmp_path, allowed_origins=("https://App.Example.com/",))
    with TestClient(app, base_url=BASE) as http_client:
        good = {"origin": "https://app.example.com"}
        response = http_client.post("/v1/search", json={"text": "x", "k": 1}, headers=good)
        assert response.status_code == 200, response.text
        assert response.headers["access-control-allow-origin"] == "https://app.example.com"
        preflight = http_client.options(
            "/v1/search",
            headers={
                **good,
                "access-control-request-method": "POST",
                "access-control-request-headers": "authorization,content-type",
            },
        )
        assert preflight.status_code == 200
        assert preflight.headers["access-control-allow-origin"] == "https://app.example.com"
        bad = {"origin": "https://evil.example"}
        response = http_client.post("/v1/search", json={"text": "x"}, headers=bad)
        _error(response, 403, "forbidden")
        assert "access-control-allow-origin" not in response.headers
        got = http_client.get("/healthz", headers=bad)
        assert got.status_code == 200 and "access-control-allow-origin" not in got.headers
        preflight = http_client.options(
            "/v1/search", headers={**bad, "access-control-request-method": "POST"}
        )
        assert "access-control-allow-origin" not in preflight.headers


# -- on a real socket: keep-alive after a 500, slow headers -------------------------------------


class BrokenTextEncoder(FakeEncoder):
    def embed_texts(self, texts: Sequence[str]) -> np.ndarray:
        if texts and texts[0] == "break":
            raise RuntimeError("a bug in the text tower")
        return super().embed_texts(texts)


@pytest.mark.filterwarnings("ignore::pytest.PytestUnhandledThreadExceptionWarning")
def test_a_500_keeps_the_connection_alive(chroma: Any, tmp_path: Path) -> None:
    app = _app(chroma, BrokenTextEncoder(), tmp_path)
    with running_server(app) as base:
        host, port = base.removeprefix("http://").split(":")
        conn = http.client.HTTPConnection(host, int(port), timeout=10)
        try:
            body, headers = b'{"texts": ["break"]}', {"content-type": "application/json"}
            conn.request("POST", "/v1/embed/text", body, headers)
            first = conn.getresponse()
            assert first.status == 500 and b"internal_error" in first.read()
            sock = conn.sock
            assert sock is not None
            conn.request("POST", "/v1/embed/text", b'{"texts": ["fine"]}', headers)
            second = conn.getresponse()
            assert second.status == 200, second.read()
            second.read()
            assert conn.sock is sock  # the same connection, not a new one
        finally:
            conn.close()


def _closed_within(sock: socket.socket, seconds: float) -> bool:
    """True when the server closes the socket (EOF) within `seconds`."""
    sock.settimeout(seconds)
    try:
        while sock.recv(4096):
            pass  # an error response before the close is fine
    except TimeoutError:
        return False
    except ConnectionError:
        return True
    return True


def test_connections_slow_to_send_headers_are_closed(chroma: Any, tmp_path: Path) -> None:
    app = _app(chroma, FakeEncoder(), tmp_path, header_timeout_s=1.0)
    with running_server(app) as base:
        host, port = base.removeprefix("http://").split(":")
        partial = [b"", b"G", b"GET / HT", b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n"]
        socks = []
        for i in range(40):
            sock = socket.create_connection((host, int(port)))
            sock.sendall(partial[i % len(partial)])
            socks.append(sock)
        started = time.monotonic()
        try:
            assert all(_closed_within(s, 4.0) for s in socks)
            assert time.monotonic() - started < 4.0
        finally:
            for sock in socks:
                sock.close()
        # After a complete exchange, the next request's headers get the same deadline.
        with socket.create_connection((host, int(port))) as sock:
            sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
            sock.settimeout(5)
            assert sock.recv(65536).startswith(b"HTTP/1.1 200")
            sock.sendall(b"GET /healthz HTTP/1.1\r\nHo")
            for _ in range(3):  # dripping bytes does not reset the deadline
                time.sleep(0.3)
                sock.sendall(b"s")
            assert _closed_within(sock, 4.0)
        # A prompt client is unaffected.
        with socket.create_connection((host, int(port))) as sock:
            time.sleep(0.5)
            sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
            sock.settimeout(5)
            assert sock.recv(65536).startswith(b"HTTP/1.1 200")


# -- work of a timed-out request stops ----------------------------------------------------------


class SlowImageEncoder(FakeEncoder):
    """Each image takes 0.1 s to decode, as a big one does; counts the decoded ones."""

    def __init__(self) -> None:
        super().__init__()
        self.decoded = 0

    def try_embed_images(self, images: Sequence[Any]) -> Any:
        for _ in images:
            time.sleep(0.1)
            self.decoded += 1
        return super().try_embed_images(images)


def test_a_timed_out_request_stops_decoding_and_frees_the_worker(
    chroma: Any, tmp_path: Path
) -> None:
    encoder = SlowImageEncoder()
    app = _app(chroma, encoder, tmp_path, request_timeout_s=0.5, max_items=64)
    with TestClient(app) as http_client:
        files = [("files", (f"{i}.png", png_bytes((i, 0, 0)), "image/png")) for i in range(40)]
        response = http_client.post("/v1/embed/image", files=files)  # 4 s of decoding
        _error(response, 504, "timeout")
        started = time.perf_counter()
        after = http_client.post("/v1/embed/text", json={"texts": ["next"]})
        assert after.status_code == 200
        assert time.perf_counter() - started < 1.5  # not the ~3.5 s the rest would take
        assert encoder.decoded <= 16, encoder.decoded


def test_serve_takes_allowed_hosts_and_origins_from_the_command_line(tmp_path: Path) -> None:
    from clip_multimodal.cli._commands import _settings
    from clip_multimodal.cli._parser import build_parser

    argv = ["serve", "--data-dir", str(tmp_path), "--allow-host", "photos.lan"]
    argv += ["--allow-host", "nas.lan", "--allow-origin", "https://App.example.com/"]
    settings = _settings(build_parser().parse_args(argv))
    assert settings.allowed_hosts == ("photos.lan", "nas.lan")
    assert settings.allowed_origins == ("https://app.example.com",)
    plain = _settings(build_parser().parse_args(["serve", "--data-dir", str(tmp_path)]))
    assert plain.allowed_hosts == () and plain.allowed_origins == ()


def test_settings_are_checked_once_and_serve_names_its_options(tmp_path: Path) -> None:
    from clip_multimodal.cli import UsageError
    from clip_multimodal.cli._commands import _settings
    from clip_multimodal.cli._parser import build_parser

    with pytest.raises(ValueError, match="max_items"):
        ServerSettings(max_items=0)
    with pytest.raises(ValueError, match="request_timeout_s"):
        ServerSettings(request_timeout_s=0)
    argv = ["serve", "--data-dir", str(tmp_path), "--max-image-mb", "0", "--timeout", "-1"]
    with pytest.raises(UsageError, match=r"--max-image-mb: .*; --timeout: "):
        _settings(build_parser().parse_args(argv))
