"""Property tests: the loader and the server's request parsers on arbitrary input.

The loader's property: for any bytes, string or path, `load_image` returns an RGB image or
raises `ImageLoadError`, within a time bound. The parsers' property: for any body or field,
each endpoint's `RequestBody` (JSON or form) and the image readers return a parsed value or
raise a typed client error (`ApiError` or FastAPI's `RequestValidationError`), within a time
bound. Anything else escaping is a bug.
"""

from __future__ import annotations

import asyncio
import base64
import io
import json
import os
import re
import subprocess
import sys
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from fastapi.exceptions import RequestValidationError
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from PIL import Image, features
from starlette.exceptions import HTTPException
from starlette.requests import Request

from clip_multimodal.errors import ImageLoadError
from clip_multimodal.images import load_image
from clip_multimodal.server import ServerSettings
from clip_multimodal.server.errors import ApiError
from clip_multimodal.server.inputs import (
    RequestBody,
    check_decode_budget,
    check_url,
    decode_base64,
    read_images,
)
from clip_multimodal.server.routes import CLASSIFY, IMAGE_EMBED, INDEX, RANK, SEARCH, TEXT_EMBED

# Each example must finish within the deadline; 100 examples a property keep this file
# near 10 s. CLIP_MM_FUZZ_EXAMPLES=5000 runs a longer campaign.
FUZZ = settings(
    max_examples=int(os.environ.get("CLIP_MM_FUZZ_EXAMPLES", "100")),
    deadline=timedelta(seconds=2),
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)


def _seed(fmt: str, mode: str = "RGB", **params: Any) -> bytes:
    buffer = io.BytesIO()
    image = Image.linear_gradient("L").resize((12, 9)).convert(mode)
    image.save(buffer, format=fmt, **params)
    return buffer.getvalue()


SEEDS = [
    _seed("PNG"),
    _seed("PNG", "RGBA"),
    _seed("PNG", "P"),
    _seed("PNG", "I;16"),
    _seed("JPEG"),
    _seed("GIF", "P"),
    _seed("BMP"),
    _seed("TIFF", "F"),
    _seed("WEBP", lossless=True),
    _seed("WEBP", "RGBA"),
    *([_seed("AVIF", quality=40)] if features.check("avif") else []),
]


@st.composite
def damaged_images(draw: st.DrawFn) -> bytes:
    """A valid small image with a few bytes overwritten, cut short or spliced in."""
    data = bytearray(draw(st.sampled_from(SEEDS)))
    for _ in range(draw(st.integers(1, 4))):
        position = draw(st.integers(0, len(data) - 1))
        action = draw(st.sampled_from(["set", "cut", "insert"]))
        if action == "set":
            data[position] = draw(st.integers(0, 255))
        elif action == "cut":
            del data[position:]
            if not data:
                break
        else:
            data[position:position] = draw(st.binary(min_size=1, max_size=8))
    return bytes(data)


def _is_rgb_or_load_error(source: Any, **kwargs: Any) -> None:
    try:
        image = load_image(source, **kwargs)
    except ImageLoadError:
        return
    assert image.mode == "RGB" and image.width > 0 and image.height > 0


@FUZZ
@given(st.one_of(st.binary(max_size=512), damaged_images()))
def test_any_bytes_give_an_rgb_image_or_image_load_error(data: bytes) -> None:
    """Property: load_image(bytes) is an RGB image or ImageLoadError, within 2 s."""
    _is_rgb_or_load_error(data, max_decode_bytes=64 * 2**20)


@FUZZ
@given(st.text(max_size=300))
def test_any_string_gives_an_rgb_image_or_image_load_error(text: str) -> None:
    """Property: load_image(str) is an RGB image or ImageLoadError, within 2 s.

    The string may read as a path, base64 or a data: URI; URLs are left out (no network).
    """
    assume(not re.match(r"(?i)\s*https?:", text))
    _is_rgb_or_load_error(text)
    _is_rgb_or_load_error("data:image/png;base64," + text)


HOSTILE_PATHS = ["/dev/zero", "/dev/urandom", "/dev/null", "/", ".", "~", "~root", "/proc/self/mem"]


@pytest.fixture(scope="module")
def path_zoo(tmp_path_factory: pytest.TempPathFactory) -> list[str]:
    """Paths of every kind: images, damaged images, links, a FIFO, a directory."""
    root = tmp_path_factory.mktemp("zoo")
    paths = []
    for i, data in enumerate(SEEDS):
        (root / f"good-{i}").write_bytes(data)
        (root / f"cut-{i}").write_bytes(data[: len(data) // 2])
        paths += [str(root / f"good-{i}"), str(root / f"cut-{i}")]
    (root / "dir.png").mkdir()
    if hasattr(os, "mkfifo"):
        os.mkfifo(root / "fifo.png")
    for target in ("/dev/zero", str(root / "good-0"), str(root / "missing")):
        link = root / f"link-{len(paths)}.png"
        link.symlink_to(target)
        paths.append(str(link))
    return [*paths, str(root / "dir.png"), str(root / "fifo.png"), *HOSTILE_PATHS]


@FUZZ
@given(data=st.data())
def test_any_path_gives_an_rgb_image_or_image_load_error(path_zoo: list[str], data: Any) -> None:
    """Property: load_image(path) is an RGB image or ImageLoadError, within 2 s, for
    files of every kind (devices, FIFOs, links, directories) and arbitrary path text."""
    base = data.draw(st.sampled_from(path_zoo))
    suffix = data.draw(st.sampled_from(["", "/", "/x", "\x00", "\ud800", "/../" * 3, "~"]))
    text = data.draw(st.one_of(st.just(base + suffix), st.text(max_size=80)))
    assume(not re.match(r"(?i)\s*https?:", text))
    _is_rgb_or_load_error(text)
    _is_rgb_or_load_error(Path(text) if "\x00" not in text else text)


# -- the server's request parsers -----------------------------------------------------------

SERVER = ServerSettings(max_image_bytes=4096, max_items=8, allowed_url_hosts=("images.test",))
BODIES = [TEXT_EMBED, IMAGE_EMBED, SEARCH, RANK, CLASSIFY, INDEX]
CONTENT_TYPES = [
    "application/json",
    "",
    "text/plain",
    "multipart/form-data; boundary=xyz",
    "multipart/form-data",
    "application/x-www-form-urlencoded",
]
TYPED = (ApiError, RequestValidationError, HTTPException)

URL_PIECES = ["[", "]", "::1", "@", ":", "\\", "/", "%", "images.test", "127.0.0.1", "x", "80"]
url_texts = st.one_of(
    st.text(max_size=120),
    st.builds(
        "".join,
        st.tuples(
            st.sampled_from(["http://", "https://", "HTTP://", "ftp://", "", "//"]),
            st.lists(st.sampled_from(URL_PIECES) | st.text(max_size=4), max_size=8).map("".join),
        ),
    ),
)


def _request(content_type: str, body: bytes) -> Request:
    sent = False

    async def receive() -> dict[str, Any]:
        nonlocal sent
        if sent:
            return {"type": "http.disconnect"}
        sent = True
        return {"type": "http.request", "body": body, "more_body": False}

    headers = [(b"content-type", content_type.encode("latin-1"))] if content_type else []
    # "app" as in a served request: Starlette then answers a broken form with HTTPException.
    scope = {"type": "http", "method": "POST", "path": "/", "headers": headers, "app": None}
    return Request(scope, receive)


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner),
    max_leaves=12,
)
FIELDS = ["texts", "urls", "images_base64", "image_base64", "image_url", "text", "k", "where"]
FIELDS += ["labels", "candidates", "templates", "file", "files", "image"]


@st.composite
def multipart_bodies(draw: st.DrawFn) -> bytes:
    """A well-formed multipart body (boundary xyz): fields and uploads under any names."""
    parts = []
    for name in draw(st.lists(st.sampled_from(FIELDS), max_size=6)):
        upload = draw(st.booleans())
        value = draw(st.binary(max_size=60) if upload else st.text(max_size=30).map(str.encode))
        disposition = f'form-data; name="{name}"' + ('; filename="f.png"' if upload else "")
        parts.append(b"--xyz\r\nContent-Disposition: " + disposition.encode() + b"\r\n\r\n")
        parts.append(value + b"\r\n")
    return b"".join(parts) + b"--xyz--\r\n"


bodies = st.one_of(
    st.binary(max_size=300),
    json_values.map(lambda v: json.dumps(v).encode()),
    st.dictionaries(st.sampled_from(FIELDS), json_values).map(lambda v: json.dumps(v).encode()),
    st.dictionaries(st.sampled_from(FIELDS), st.text(max_size=30)).map(
        lambda fields: "&".join(f"{k}={v}" for k, v in fields.items()).encode()
    ),
)


@FUZZ
@given(spec=st.sampled_from(BODIES), content_type=st.sampled_from(CONTENT_TYPES), body=bodies)
def test_any_body_parses_or_gives_a_typed_error(
    spec: RequestBody[Any], content_type: str, body: bytes
) -> None:
    """Property: every endpoint's body parser, on any JSON, form or raw body, gives its JSON
    or form model (uploads read, each within the image cap) or a typed error."""
    try:
        parsed = asyncio.run(spec.parse(_request(content_type, body), SERVER))
    except TYPED:
        return
    assert isinstance(parsed.model, tuple(m for m in (spec.json, spec.form) if m is not None))


@FUZZ
@given(spec=st.sampled_from(BODIES), body=multipart_bodies())
def test_any_form_parses_or_gives_a_typed_error(spec: RequestBody[Any], body: bytes) -> None:
    """Property: on any multipart form (fields and uploads under any names), every endpoint's
    body parser gives its form model with each upload read within the image cap, or a typed
    error."""
    request = _request("multipart/form-data; boundary=xyz", body)
    try:
        parsed = asyncio.run(spec.parse(request, SERVER))
    except TYPED:
        return
    assert isinstance(parsed.model, spec.form)
    assert all(0 < len(f.data) <= SERVER.max_image_bytes for f in parsed.files)


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


@FUZZ
@given(
    images=st.lists(st.one_of(st.text(max_size=60), st.binary(max_size=200).map(_b64)), max_size=3),
    urls=st.lists(url_texts, max_size=2),
)
def test_any_image_fields_are_read_or_give_a_typed_error(
    images: list[str], urls: list[str]
) -> None:
    """Property: base64 fields and URLs give bytes or a typed error. URLs naming the one
    allowed host are left out, so nothing is fetched."""
    assume(not any("images.test" in u.lower() for u in urls))
    try:
        out = asyncio.run(read_images(SERVER, (), images, urls))
    except TYPED:
        return
    assert len(out) == len(images) + len(urls)


@FUZZ
@given(
    st.one_of(st.text(max_size=200), st.binary(max_size=300).map(_b64), damaged_images().map(_b64))
)
def test_any_base64_field_decodes_or_gives_a_typed_error(text: str) -> None:
    """Property: decode_base64 and the decode-budget check give bytes/None or ApiError."""
    status = 200
    try:
        data = decode_base64(text, 0, SERVER.max_image_bytes)
        check_decode_budget(data, 0, SERVER)
    except ApiError as exc:
        status = exc.status
    assert 200 <= status < 500


@FUZZ
@given(url_texts)
def test_any_url_is_checked_or_gives_a_typed_error(url: str) -> None:
    """Property: check_url accepts only allowlisted http(s) hosts, else an ApiError."""
    try:
        check_url(url, SERVER)
    except ApiError as exc:
        status = exc.status
    else:
        status = 200
        assert url.split("://", 1)[0].lower() in ("http", "https")
    assert status in (200, 400, 403)


# -- the atheris harness, for a short fixed budget ------------------------------------------

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_the_atheris_harness_finds_no_crash_in_20_seconds(tmp_path: Path) -> None:
    """`make fuzz` for 20 s: any exception from load_image other than ImageLoadError (or a
    non-RGB result, a timeout or 2 GB of memory) would leave a crash file and fail."""
    pytest.importorskip("atheris")
    work = tmp_path / "corpus"
    work.mkdir()
    command = [
        sys.executable,
        str(ROOT / "tests" / "fuzz" / "fuzz_load_image.py"),
        str(work),
        str(ROOT / "tests" / "fuzz" / "corpus"),
        "-max_total_time=20",
        "-timeout=10",
        "-rss_limit_mb=2048",
        f"-artifact_prefix={tmp_path}/",
    ]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    # libFuzzer's -rss_limit_mb reads ru_maxrss, which Linux carries over fork and exec: a
    # harness started straight from this (GB-sized) pytest process starts "out of memory".
    # A shell that forks the harness (the trailing `exit` keeps it from exec'ing) gives the
    # harness a fresh peak of its own.
    command = ["/bin/sh", "-c", '"$@"; exit $?', "sh", *command]
    run = subprocess.run(command, capture_output=True, text=True, timeout=180, env=env)
    assert run.returncode == 0, run.stderr[-3000:]
    assert not list(tmp_path.glob("crash-*")) and not list(tmp_path.glob("oom-*"))
    done = re.search(r"Done (\d+) runs", run.stderr)
    assert done and int(done.group(1)) > 100, run.stderr[-3000:]
