"""AccessPolicy: the one allowlist for paths and URLs, and `load_image(..., policy=...)`.

Every refusal happens before any byte is read or any connection is made: the metadata
address below is never contacted (the refusal is checked to be immediate).
"""

from __future__ import annotations

import http.server
import io
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image

from clip_multimodal.access import AccessDeniedError, AccessPolicy, parse_url
from clip_multimodal.errors import ImageLoadError
from clip_multimodal.images import fetch_url, load_image
from tests.server_helpers import ImageHandler, without_proxies


def _png() -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (8, 8), (200, 30, 30)).save(buf, format="PNG")
    return buf.getvalue()


PNG = _png()

AMBIGUOUS_URLS = [
    "http://127.0.0.2:8799\\@127.0.0.1/",  # the check and the fetcher once saw two hosts
    "http://127.0.0.1\\@example.com/",
    "http://user:pw@127.0.0.1/x.png",
    "http://@127.0.0.1/x.png",
    "http://127.0.0.1 /x.png",
    "http://127.0.0.1/x\n.png",
    "http://127.0.0.1/\x00.png",
    "http://[::1/x.png",
    "http://127.0.0.1:99999/x.png",
    "http://127.0.0.1:0/x.png",
    "http://127.0.0.2%3a8799%40127.0.0.1/x.png",
    "http:///x.png",
    "file:///etc/passwd",
    "ftp://127.0.0.1/x.png",
    "gopher://127.0.0.1/",
]


@pytest.mark.parametrize("url", AMBIGUOUS_URLS)
def test_ambiguous_urls_are_refused_by_the_parser(url: str) -> None:
    with pytest.raises(AccessDeniedError):
        parse_url(url)


@pytest.mark.parametrize("url", AMBIGUOUS_URLS[:12])  # the http(s) ones
def test_the_fetcher_refuses_them_without_a_policy_too(url: str) -> None:
    with pytest.raises(ImageLoadError):
        fetch_url(url, max_bytes=1000, timeout=1)
    with pytest.raises(AccessDeniedError):
        load_image(url, policy=AccessPolicy(url_hosts=["127.0.0.1", "example.com"]))


def test_an_empty_policy_allows_no_url_and_no_path(tmp_path: Path) -> None:
    image = tmp_path / "a.png"
    image.write_bytes(PNG)
    policy = AccessPolicy()
    started = time.perf_counter()
    with pytest.raises(AccessDeniedError, match="not allowed"):
        load_image("http://169.254.169.254/latest/meta-data/", policy=policy)
    assert time.perf_counter() - started < 0.5  # refused, not attempted
    with pytest.raises(AccessDeniedError, match="not allowed"):
        load_image(str(image), policy=policy)
    with pytest.raises(AccessDeniedError):
        load_image(image, policy=policy)
    # Bytes, base64 and data: URIs reach nothing: they pass.
    assert load_image(PNG, policy=policy).size == (8, 8)
    b64 = __import__("base64").b64encode(PNG).decode()
    assert load_image(b64, policy=policy).size == (8, 8)
    assert load_image(f"data:image/png;base64,{b64}", policy=policy).size == (8, 8)


def test_paths_are_allowed_only_under_a_root(tmp_path: Path) -> None:
    root, outside = tmp_path / "root", tmp_path / "outside"
    root.mkdir()
    outside.mkdir()
    (root / "a.png").write_bytes(PNG)
    (outside / "secret.png").write_bytes(PNG)
    (root / "link.png").symlink_to(outside / "secret.png")
    policy = AccessPolicy(roots=[root])
    assert load_image(str(root / "a.png"), policy=policy).size == (8, 8)
    attempts = [
        outside / "secret.png",
        root / ".." / "outside" / "secret.png",
        root / "link.png",  # a link inside the root to a file outside it
        "/etc/passwd",
        "/dev/zero",  # a device: never opened
        "~nosuchuser/x.png",
        "a\x00b.png",
        "\udcff.png",
        "x" * 300 + ".png",
    ]
    for attempt in attempts:
        with pytest.raises(AccessDeniedError):
            load_image(attempt if isinstance(attempt, Path) else str(attempt), policy=policy)


def test_a_relative_path_resolves_against_the_working_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "a.png").write_bytes(PNG)
    monkeypatch.chdir(tmp_path)
    assert load_image("a.png", policy=AccessPolicy(roots=["."])).size == (8, 8)
    with pytest.raises(AccessDeniedError):
        load_image("a.png", policy=AccessPolicy(roots=[tmp_path / "sub"]))


class _Images(ImageHandler):
    def do_GET(self) -> None:
        if self.path.startswith("/redirect"):
            self.send_response(302)
            backslash = "http://127.0.0.2:1\\@127.0.0.1/a.png"
            self.send_header("Location", self.path.partition("?")[2] or backslash)
            self.end_headers()
            return
        body = PNG if self.path.endswith(".png") else b"\0" * 5000
        self.send_body(body)


@pytest.fixture(scope="module")
def image_host(request: pytest.FixtureRequest) -> Iterator[str]:
    with without_proxies():
        server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Images)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        yield f"http://127.0.0.1:{server.server_address[1]}"
        server.shutdown()
        server.server_close()


def test_urls_are_allowed_by_host_or_prefix(image_host: str) -> None:
    port = image_host.rsplit(":", 1)[1]
    by_host = AccessPolicy(url_hosts=["127.0.0.1"])
    assert load_image(f"{image_host}/a.png", policy=by_host).size == (8, 8)
    with pytest.raises(AccessDeniedError, match="allowlist"):
        load_image(f"http://localhost:{port}/a.png", policy=by_host)
    by_prefix = AccessPolicy(url_prefixes=[f"{image_host}/public/"])
    assert load_image(f"{image_host}/public/a.png", policy=by_prefix).size == (8, 8)
    for outside in (
        f"{image_host}/private/a.png",
        f"{image_host}/public/../private/a.png",
        f"{image_host}/public/%2e%2e/private/a.png",
        f"{image_host}/publicity/a.png",
    ):
        with pytest.raises(AccessDeniedError):
            load_image(outside, policy=by_prefix)


def test_a_redirect_off_the_allowlist_is_refused(image_host: str) -> None:
    away = f"{image_host}/redirect?http://localhost:1/a.png"
    with pytest.raises(ImageLoadError, match="refused"):
        fetch_url(away, max_bytes=10**6, timeout=5, allowed_hosts={"127.0.0.1"})
    backslash = f"{image_host}/redirect-to-a-backslash"
    with pytest.raises(ImageLoadError, match="refused"):
        fetch_url(backslash, max_bytes=10**6, timeout=5, allowed_hosts={"127.0.0.1"})


def test_an_oversized_url_body_is_too_large_once(image_host: str) -> None:
    with pytest.raises(ImageLoadError) as caught:
        fetch_url(f"{image_host}/big", max_bytes=4000, timeout=5)
    assert caught.value.reason.startswith("too large")
    assert str(caught.value).count("cannot load image") == 1


# -- property: one reading of a URL ------------------------------------------------------------

_URL_PARTS = st.sampled_from(
    ["http://", "https://", "HTTP://", "ftp://", "", "//", "127.0.0.1", "127.0.0.2", "example.com",
     ":8799", ":", "@", "\\", "/", "?", "#", "[", "]", "::1", "%40", "%5c", " ", "\t", "x", "."]
)  # fmt: skip


@settings(max_examples=400, deadline=None)
@given(st.lists(_URL_PARTS, max_size=10).map("".join))
def test_an_accepted_url_has_one_host_for_every_parser(url: str) -> None:
    """The allowlist's parser and the fetcher's (urllib.request) agree on what they accept."""
    import urllib.request

    try:
        parts = parse_url(url)
    except AccessDeniedError:
        return  # refusing is always safe
    request = urllib.request.Request(url)
    host = request.host.rsplit(":", 1)[0] if not request.host.endswith("]") else request.host
    assert host.strip("[]").lower() == parts.hostname
