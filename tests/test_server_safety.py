"""The service's guards, each attacked: traversal, oversized bodies, URLs, tokens, timeouts.

The app runs on the real demo model over a real (embedded) Chroma; the literal `..` paths
go over a raw socket to a real uvicorn, because HTTP clients normalize them away.
"""

from __future__ import annotations

import base64
import http.server
import io
import os
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
from PIL import Image

from clip_multimodal.index import ImageIndex
from clip_multimodal.server import InsecureBindError, ServerSettings, check_bind, create_app
from clip_multimodal.server.bind import is_loopback
from clip_multimodal.testing import FakeEncoder
from tests.server_helpers import png_bytes, raw_get, running_server

PASSWD = b"root:"


def _name() -> str:
    return f"safe-{uuid.uuid4().hex[:12]}"


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory, demo_encoder: Any) -> dict[str, Any]:
    """A small index whose records include a file, a bytes-only image and a tampered record."""
    root = tmp_path_factory.mktemp("safety")
    images = root / "images"
    images.mkdir()
    for i, color in enumerate([(200, 30, 30), (30, 200, 30), (30, 30, 200)]):
        (images / f"img-{i}.png").write_bytes(png_bytes(color))
    client = chromadb.PersistentClient(path=str(root / "chroma"))
    name = _name()
    index = ImageIndex(demo_encoder, name, client=client)
    index.index_folder(images, progress=False)
    bytes_only = index.add([png_bytes((1, 2, 3))]).ids[0]
    # A record claiming /etc/passwd as its image, as if someone wrote one by hand.
    vector = demo_encoder.embed_texts(["x"])
    index.add_embeddings(vector, ["tampered"], uris=["/etc/passwd"])
    return {"client": client, "name": name, "index": index, "bytes_only": bytes_only, "root": root}


def _app(store: dict[str, Any], encoder: Any, **settings: Any) -> Any:
    config = ServerSettings(collection=store["name"], data_dir=store["root"], **settings)
    return create_app(config, encoder=encoder, client=store["client"])


@pytest.fixture(scope="module")
def api(store: dict[str, Any], demo_encoder: Any) -> Iterator[TestClient]:
    app = _app(store, demo_encoder, max_image_bytes=4096, max_body_bytes=16384)
    with TestClient(app) as http:
        yield http


def _status(response: Any, status: int, type_: str) -> str:
    assert response.status_code == status, response.text
    assert response.json()["error"]["type"] == type_
    return str(response.json()["error"]["message"])


# -- /v1/images serves only files the index recorded ------------------------------------------

TRAVERSALS = [
    "..%2F..%2F..%2Fetc%2Fpasswd",
    "%2e%2e%2f%2e%2e%2f%2e%2e%2fetc%2fpasswd",
    "%2Fetc%2Fpasswd",
    "%2e%2e",
    "..",
    "..%5C..%5Cetc%5Cpasswd",
    "....%2F%2F....%2F%2Fetc%2Fpasswd",
    "%252e%252e%252fetc%252fpasswd",
    "file%3A..%2F..%2Fetc%2Fpasswd",
    "%00",
]


@pytest.mark.parametrize("attempt", TRAVERSALS)
def test_encoded_traversal_ids_find_nothing(api: TestClient, attempt: str) -> None:
    response = api.get(f"/v1/images/{attempt}")
    assert response.status_code == 404, response.text
    assert PASSWD not in response.content
    assert response.headers["content-type"] == "application/json"


def test_literal_dot_dot_paths_on_a_real_socket_find_nothing(
    store: dict[str, Any], demo_encoder: Any
) -> None:
    with running_server(_app(store, demo_encoder)) as base:
        for path in (
            "/v1/images/../../../../etc/passwd",
            "/v1/images/..%2F..%2F..%2F..%2Fetc%2Fpasswd",
            "/v1/images//etc/passwd",
            "/v1/images/%2Fetc%2Fpasswd",
            "/static/../../../../../../etc/passwd",
            "/static/..%2F..%2F..%2F..%2F..%2Fetc%2Fpasswd",
        ):
            status, body = raw_get(base, path)
            assert status in (400, 404), (path, status)
            assert PASSWD not in body, path
        status, body = raw_get(base, "/static/app.js")  # the real file still comes back
        assert status == 200 and b"use strict" in body


def test_a_record_naming_a_non_image_file_is_not_served(api: TestClient) -> None:
    message = _status(api.get("/v1/images/tampered"), 404, "not_found")
    assert "tampered" in message


def test_a_record_without_a_local_file_is_not_served(
    api: TestClient, store: dict[str, Any]
) -> None:
    _status(api.get(f"/v1/images/{store['bytes_only']}"), 404, "not_found")


def test_a_file_changed_or_deleted_since_indexing_is_not_served(
    store: dict[str, Any], demo_encoder: Any, tmp_path: Path
) -> None:
    (changed, deleted), ids = _indexed_pngs(store, tmp_path, "changed.png", "deleted.png")
    with TestClient(_app(store, demo_encoder)) as http:
        assert http.get(f"/v1/images/{ids['changed.png']}").status_code == 200
        changed.write_bytes(b"now a different, longer file that is not the indexed image")
        deleted.unlink()
        _status(http.get(f"/v1/images/{ids['changed.png']}"), 404, "not_found")
        _status(http.get(f"/v1/images/{ids['deleted.png']}"), 404, "not_found")


def test_a_same_size_rewrite_or_a_link_is_not_served(
    store: dict[str, Any], demo_encoder: Any, tmp_path: Path
) -> None:
    (same, linked), ids = _indexed_pngs(store, tmp_path, "same.png", "linked.png")
    with TestClient(_app(store, demo_encoder)) as http:
        assert http.get(f"/v1/images/{ids['same.png']}").status_code == 200
        size = same.stat().st_size
        same.write_bytes(bytes(size))  # same length, other content, a new mtime
        os.utime(same, ns=(same.stat().st_atime_ns, same.stat().st_mtime_ns + 10**9))
        _status(http.get(f"/v1/images/{ids['same.png']}"), 404, "not_found")
        secret = tmp_path / "secret.txt"
        secret.write_bytes(linked.read_bytes())
        linked.unlink()
        linked.symlink_to(secret)  # same bytes, but now a link to another file
        _status(http.get(f"/v1/images/{ids['linked.png']}"), 404, "not_found")


def _indexed_pngs(
    store: dict[str, Any], tmp_path: Path, *names: str
) -> tuple[list[Path], dict[str, str]]:
    """Write one small PNG per name into a fresh folder, index it; (paths, name -> id)."""
    folder = tmp_path / "imgs"
    folder.mkdir()
    paths = [folder / name for name in names]
    for i, path in enumerate(paths):
        path.write_bytes(png_bytes((9 - i, 9 - i, 9 - i)))
    index: ImageIndex = store["index"]
    index.index_folder(folder, progress=False)
    ids = {Path(r.uri or "").name: r.id for r in index.get(_folder_ids(index, folder))}
    return paths, ids


def _folder_ids(index: ImageIndex, folder: Path) -> list[str]:
    got = index.collection.get(where={"folder": str(folder.absolute())})
    return list(got["ids"])


# -- size caps ---------------------------------------------------------------------------------


def test_an_oversized_body_is_refused_by_its_length(api: TestClient) -> None:
    big = b"x" * 20000  # over max_body_bytes=16384
    response = api.post("/v1/embed/text", content=big, headers={"content-type": "application/json"})
    message = _status(response, 413, "payload_too_large")
    assert "16384" in message


def test_an_oversized_streamed_body_is_cut_off(api: TestClient) -> None:
    def chunks() -> Iterator[bytes]:  # no Content-Length: the cap counts as it streams
        for _ in range(40):
            yield b"y" * 1024

    response = api.post(
        "/v1/embed/text", content=chunks(), headers={"content-type": "application/json"}
    )
    _status(response, 413, "payload_too_large")


def test_an_oversized_upload_is_refused(api: TestClient) -> None:
    noise = np.random.default_rng(0).integers(0, 256, (64, 64, 3), dtype=np.uint8)
    buf = io.BytesIO()
    Image.fromarray(noise).save(buf, format="PNG")
    assert 4096 < len(buf.getvalue()) < 16384  # over the image cap, under the body cap
    files = {"file": ("noise.png", buf.getvalue(), "image/png")}
    message = _status(api.post("/v1/search", files=files), 413, "payload_too_large")
    assert "noise.png" in message


def test_an_oversized_base64_image_is_refused(api: TestClient) -> None:
    payload = base64.b64encode(b"z" * 6000).decode()
    response = api.post("/v1/embed/image", json={"images_base64": [payload]})
    _status(response, 413, "payload_too_large")


def test_too_many_items_are_refused(store: dict[str, Any], demo_encoder: Any) -> None:
    with TestClient(_app(store, demo_encoder, max_items=3)) as http:
        response = http.post("/v1/embed/text", json={"texts": ["a", "b", "c", "d"]})
        assert "limit is 3" in _status(response, 400, "bad_request")


# -- URLs ----------------------------------------------------------------------------------------


class _ImageHandler(http.server.BaseHTTPRequestHandler):
    image = png_bytes((200, 30, 30))

    def do_GET(self) -> None:
        if self.path == "/redirect":
            self.send_response(302)
            self.send_header("Location", "http://localhost:1/elsewhere.png")
            self.end_headers()
            return
        self.send_response(200)
        self.send_header("Content-Type", "image/png")
        self.send_header("Content-Length", str(len(self.image)))
        self.end_headers()
        self.wfile.write(self.image)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture(scope="module")
def image_host() -> Iterator[str]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _ImageHandler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_url_fetching_is_off_by_default(api: TestClient, image_host: str) -> None:
    response = api.post("/v1/search", json={"image_url": f"{image_host}/red.png"})
    assert "disabled" in _status(response, 403, "forbidden")
    response = api.post("/v1/embed/image", json={"urls": [f"{image_host}/red.png"]})
    _status(response, 403, "forbidden")


def test_only_allowlisted_hosts_are_fetched(
    store: dict[str, Any], demo_encoder: Any, image_host: str
) -> None:
    port = image_host.rsplit(":", 1)[1]
    with TestClient(_app(store, demo_encoder, allowed_url_hosts=("127.0.0.1",))) as http:
        fetched = http.post("/v1/search", json={"image_url": f"{image_host}/red.png", "k": 1})
        assert fetched.status_code == 200, fetched.text
        assert fetched.json()["hits"][0]["uri"].endswith("img-0.png")  # the same red image
        other = http.post("/v1/search", json={"image_url": f"http://localhost:{port}/red.png"})
        assert "'localhost'" in _status(other, 403, "forbidden")
        evil = http.post("/v1/search", json={"image_url": "http://169.254.169.254/latest"})
        _status(evil, 403, "forbidden")
        scheme = http.post("/v1/search", json={"image_url": "file:///etc/passwd"})
        _status(scheme, 400, "bad_request")
        redirect = http.post("/v1/search", json={"image_url": f"{image_host}/redirect"})
        assert "refused" in _status(redirect, 400, "bad_request")


# -- the token -----------------------------------------------------------------------------------


def test_a_token_guards_every_v1_endpoint(store: dict[str, Any], demo_encoder: Any) -> None:
    with TestClient(_app(store, demo_encoder, token="s3cret-token")) as http:
        for missing in (
            http.post("/v1/search", json={"text": "x"}),
            http.post("/v1/embed/text", json={"texts": ["x"]}),
            http.get("/v1/images/x"),
        ):
            assert "Authorization: Bearer" in _status(missing, 401, "unauthorized")
            assert missing.headers["www-authenticate"] == "Bearer"
        wrong = http.post(
            "/v1/search", json={"text": "x"}, headers={"Authorization": "Bearer nope"}
        )
        _status(wrong, 401, "unauthorized")
        basic = http.post(
            "/v1/search", json={"text": "x"}, headers={"Authorization": "Basic czNjcmV0LXRva2Vu"}
        )
        _status(basic, 401, "unauthorized")
        latin = http.post(
            "/v1/search", json={"text": "x"}, headers={"Authorization": b"Bearer \xe9"}
        )
        _status(latin, 401, "unauthorized")  # a non-ASCII token is compared as bytes, not a 500
        good = http.post(
            "/v1/search",
            json={"text": "x", "k": 1},
            headers={"Authorization": "Bearer s3cret-token"},
        )
        assert good.status_code == 200 and len(good.json()["hits"]) == 1
        # Liveness and the page stay open; they hold no data.
        assert http.get("/healthz").status_code == 200
        assert http.get("/").status_code == 200


def test_a_request_without_the_token_never_has_its_body_read(
    store: dict[str, Any], demo_encoder: Any
) -> None:
    with TestClient(_app(store, demo_encoder, token="t", max_body_bytes=100)) as http:
        response = http.post("/v1/embed/text", content=b"x" * 1000)
        _status(response, 401, "unauthorized")  # not 413: the token is checked first


@pytest.mark.parametrize(
    ("host", "loopback"),
    [
        ("127.0.0.1", True),
        ("127.0.0.2", True),
        ("localhost", True),
        ("::1", True),
        ("[::1]", True),
        ("0.0.0.0", False),
        ("::", False),
        ("192.168.1.10", False),
        ("example.com", False),
    ],
)
def test_binding_off_loopback_needs_a_token(host: str, loopback: bool) -> None:
    assert is_loopback(host) is loopback
    check_bind(host, "a-token")  # with a token, any address is allowed
    if loopback:
        check_bind(host, None)
    else:
        with pytest.raises(InsecureBindError, match="--token"):
            check_bind(host, None)


# -- timeouts ------------------------------------------------------------------------------------


class SlowEncoder(FakeEncoder):
    def embed_texts(self, texts: Sequence[str]) -> np.ndarray:
        time.sleep(2.0)
        return super().embed_texts(texts)


def test_a_slow_request_gets_504(tmp_path: Path) -> None:
    settings = ServerSettings(collection=_name(), data_dir=tmp_path, request_timeout_s=0.2)
    with TestClient(create_app(settings, encoder=SlowEncoder())) as http:
        start = time.perf_counter()
        response = http.post("/v1/embed/text", json={"texts": ["slow"]})
        assert time.perf_counter() - start < 1.5  # answered at the deadline, not after the work
        assert "0.2s" in _status(response, 504, "timeout")
        assert http.get("/healthz").status_code == 200
