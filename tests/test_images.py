"""load_image on every input kind and mode, its failures, URL fetching, draft, info, base64."""

from __future__ import annotations

import base64
import contextlib
import hashlib
import http.server
import io
import os
import socket
import threading
import time
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image, ImageSequence

from clip_multimodal.errors import ImageLoadError
from clip_multimodal.images import (
    DEFAULT_MAX_PIXELS,
    describe_source,
    fetch_url,
    file_fingerprint,
    is_image_reference,
    load_image,
    load_image_with_info,
    read_bytes,
    read_encoded,
    read_header,
    sha256_file,
    to_base64,
    to_data_uri,
)

RED, GREEN, BLUE, WHITE, BLACK = (255, 0, 0), (0, 255, 0), (0, 0, 255), (255, 255, 255), (0, 0, 0)


def noise(size: tuple[int, int] = (24, 16), seed: int = 0) -> Image.Image:
    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8))


def encode(image: Image.Image, fmt: str = "PNG", **params: Any) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **params)
    return buffer.getvalue()


def save(tmp_path: Path, name: str, image: Image.Image, **params: Any) -> Path:
    path = tmp_path / name
    image.save(path, **params)
    return path


def pixels(image: Image.Image) -> np.ndarray:
    assert image.mode == "RGB"
    return np.asarray(image)


def px(image: Image.Image, xy: tuple[int, int]) -> tuple[int, ...]:
    return tuple(int(v) for v in pixels(image)[xy[1], xy[0]])


def assert_fails(source: object, *words: str, **kwargs: object) -> ImageLoadError:
    with pytest.raises(ImageLoadError) as info:
        load_image(source, **kwargs)  # type: ignore[arg-type]
    message = str(info.value)
    assert describe_source(source) in message
    assert info.value.source == describe_source(source)
    for word in words:
        assert word in message
    return info.value


# --- modes ------------------------------------------------------------------------------


def test_rgb_png_is_returned_unchanged(tmp_path: Path) -> None:
    image = noise()
    loaded = load_image(save(tmp_path, "a.png", image))
    assert loaded.mode == "RGB"
    assert np.array_equal(pixels(loaded), np.asarray(image))


def test_rgba_is_composited_on_white(tmp_path: Path) -> None:
    image = Image.new("RGBA", (3, 1))
    image.putdata([(255, 0, 0, 0), (0, 0, 0, 128), (0, 255, 0, 255)])
    loaded = load_image(save(tmp_path, "a.png", image))
    assert px(loaded, (0, 0)) == WHITE  # fully transparent red shows the white background
    assert all(abs(v - 127) <= 1 for v in px(loaded, (1, 0)))  # half black over white
    assert px(loaded, (2, 0)) == GREEN


def test_la_is_composited_on_white(tmp_path: Path) -> None:
    image = Image.new("LA", (2, 1))
    image.putdata([(0, 0), (0, 255)])
    loaded = load_image(save(tmp_path, "a.png", image))
    assert [px(loaded, (0, 0)), px(loaded, (1, 0))] == [WHITE, BLACK]


@pytest.mark.parametrize("name", ["p.png", "p.gif"])
def test_palette_with_transparency_is_composited_on_white(tmp_path: Path, name: str) -> None:
    image = Image.new("P", (2, 1))
    image.putpalette([*RED, *BLUE] + [0] * 762)
    image.putdata([0, 1])
    path = save(tmp_path, name, image, transparency=0)
    assert Image.open(path).mode == "P"
    loaded = load_image(path)
    assert [px(loaded, (0, 0)), px(loaded, (1, 0))] == [WHITE, BLUE]


def test_cmyk_is_converted(tmp_path: Path) -> None:
    image = Image.new("CMYK", (3, 1))
    image.putdata([(0, 0, 0, 0), (0, 0, 0, 255), (255, 0, 0, 0)])
    loaded = load_image(save(tmp_path, "a.tiff", image))
    assert [px(loaded, (x, 0)) for x in range(3)] == [WHITE, BLACK, (0, 255, 255)]
    jpeg = load_image(save(tmp_path, "a.jpg", Image.new("CMYK", (8, 8), (0, 255, 255, 0))))
    assert np.abs(pixels(jpeg).astype(int) - RED).max() <= 3


def test_16_bit_grey_is_scaled_not_clipped(tmp_path: Path) -> None:
    values = np.array([[0, 32768, 65535]], dtype=np.uint16)
    path = save(tmp_path, "a.png", Image.fromarray(values))
    assert Image.open(path).mode == "I;16"
    loaded = load_image(path)
    assert [px(loaded, (x, 0)) for x in range(3)] == [BLACK, (128, 128, 128), WHITE]
    assert Image.open(path).convert("L").getpixel((1, 0)) == 255  # what PIL alone would give


def test_32_bit_int_grey_is_scaled(tmp_path: Path) -> None:
    wide = save(tmp_path, "i.tiff", Image.fromarray(np.array([[0, 32768, 65535]], np.int32)))
    assert Image.open(wide).mode == "I"
    assert [px(load_image(wide), (x, 0))[0] for x in range(3)] == [0, 128, 255]
    narrow = save(tmp_path, "n.tiff", Image.fromarray(np.array([[0, 77, 255]], np.int32)))
    assert [px(load_image(narrow), (x, 0))[0] for x in range(3)] == [0, 77, 255]


def test_float_grey_is_scaled(tmp_path: Path) -> None:
    unit = save(tmp_path, "u.tiff", Image.fromarray(np.array([[0.0, 0.5, 1.0]], np.float32)))
    assert Image.open(unit).mode == "F"
    assert [px(load_image(unit), (x, 0))[0] for x in range(3)] == [0, 128, 255]
    byte_range = Image.fromarray(np.array([[0.0, 200.0, 300.0]], np.float32))
    assert [px(load_image(byte_range), (x, 0))[0] for x in range(3)] == [0, 200, 255]


@pytest.mark.parametrize(
    ("mode", "values", "expected"), [("1", [0, 1], [0, 255]), ("L", [0, 77], [0, 77])]
)
def test_bilevel_and_grey_become_rgb(
    tmp_path: Path, mode: str, values: list[int], expected: list[int]
) -> None:
    image = Image.new(mode, (2, 1))
    image.putdata(values)
    loaded = load_image(save(tmp_path, "a.png", image))
    assert [px(loaded, (x, 0)) for x in range(2)] == [(v, v, v) for v in expected]


def test_exif_orientation_is_applied(tmp_path: Path) -> None:
    stored = Image.new("RGB", (40, 20), BLUE)
    stored.paste(RED, (0, 0, 20, 20))  # left half red
    exif = Image.Exif()
    exif[0x0112] = 6  # display rotated 90 degrees clockwise
    path = save(tmp_path, "a.jpg", stored, exif=exif, quality=95)
    loaded, info = load_image_with_info(path)
    assert loaded.size == (20, 40)
    assert (info.width, info.height) == (20, 40)
    assert np.abs(np.array(px(loaded, (10, 5))) - RED).max() < 30  # the left half is now on top
    assert np.abs(np.array(px(loaded, (10, 35))) - BLUE).max() < 30


def test_animated_gif_gives_first_frame(tmp_path: Path) -> None:
    frames = [Image.new("RGB", (4, 4), c) for c in (RED, GREEN, BLUE)]
    path = tmp_path / "a.gif"
    frames[0].save(path, save_all=True, append_images=frames[1:], duration=50, loop=0)
    assert sum(1 for _ in ImageSequence.Iterator(Image.open(path))) == 3
    assert px(load_image(path), (1, 1)) == RED


# --- input kinds ------------------------------------------------------------------------


def test_every_input_kind_gives_the_same_pixels(tmp_path: Path) -> None:
    image = noise()
    path = save(tmp_path, "a.png", image)
    data = path.read_bytes()
    b64 = base64.b64encode(data).decode()
    expected = np.asarray(image)
    sources: list[object] = [
        str(path),
        path,
        data,
        bytearray(data),
        b64,
        base64.encodebytes(data).decode(),  # line-wrapped
        b64.rstrip("="),  # padding dropped
        f"data:image/png;base64,{b64}",
        Image.open(path),
        expected.copy(),
    ]
    for source in sources:
        assert np.array_equal(pixels(load_image(source)), expected), describe_source(source)  # type: ignore[arg-type]


def test_grey_arrays_and_rgba_arrays() -> None:
    grey = np.arange(12, dtype=np.uint8).reshape(3, 4) * 20
    assert np.array_equal(pixels(load_image(grey)), np.stack([grey] * 3, axis=-1))
    assert np.array_equal(pixels(load_image(grey[:, :, None])), np.stack([grey] * 3, axis=-1))
    rgba = np.zeros((2, 2, 4), np.uint8)
    rgba[0, 0] = (0, 0, 255, 255)
    loaded = load_image(rgba)
    assert px(loaded, (0, 0)) == BLUE
    assert px(loaded, (1, 1)) == WHITE


def test_pil_input_is_not_returned_or_changed() -> None:
    image = noise()
    before = np.asarray(image).copy()
    loaded = load_image(image)
    loaded.putpixel((0, 0), (1, 2, 3))
    assert loaded is not image
    assert np.array_equal(np.asarray(image), before)


def test_tilde_path_is_expanded(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))
    save(tmp_path, "a.png", noise())
    assert load_image("~/a.png").size == (24, 16)


# --- failures ---------------------------------------------------------------------------


def test_truncated_file(tmp_path: Path) -> None:
    data = encode(noise((64, 64)))
    path = tmp_path / "cut.png"
    path.write_bytes(data[: len(data) // 2])
    assert_fails(path, "truncated")
    assert_fails(data[: len(data) // 2], "truncated")


def test_zero_byte_inputs(tmp_path: Path) -> None:
    path = tmp_path / "empty.png"
    path.write_bytes(b"")
    assert_fails(path, "empty")
    assert_fails(b"", "empty", "<bytes: 0 B>")


def test_not_an_image(tmp_path: Path) -> None:
    path = tmp_path / "notes.png"
    path.write_text("just some text, not a picture\n" * 10)
    assert_fails(path, "not an image")
    assert_fails(b"GIF89a but not really", "not an image")


def test_too_many_pixels(tmp_path: Path) -> None:
    path = save(tmp_path, "big.png", noise((100, 100)))
    assert_fails(path, "too large", "10000 pixels", max_pixels=5000)
    assert load_image(path, max_pixels=10_000).size == (100, 100)
    assert load_image(path, max_pixels=None).size == (100, 100)


def test_too_many_bytes() -> None:
    data = encode(noise())
    assert_fails(data, "too large", "max_bytes=100", max_bytes=100)
    b64 = base64.b64encode(data).decode()
    err = assert_fails(b64, "too large", max_bytes=100)
    assert err.source == f"<base64: {len(b64)} chars>"
    assert_fails(f"data:image/png;base64,{b64}", "too large", max_bytes=100)


def test_missing_file_and_directory(tmp_path: Path) -> None:
    missing = tmp_path / "nope.jpg"
    assert str(missing) in str(assert_fails(missing, "no such file"))
    assert_fails(str(missing), "no such file")
    assert_fails(tmp_path, "directory")
    assert_fails(str(tmp_path), "directory")


@pytest.mark.parametrize("url", ["file:///etc/passwd", "ftp://127.0.0.1/a.png", "s3://b/k.png"])
def test_unsupported_schemes(url: str) -> None:
    assert_fails(url, "unsupported scheme")
    with pytest.raises(ImageLoadError, match="scheme"):
        fetch_url(url, max_bytes=1000, timeout=1)


def test_bad_base64() -> None:
    assert_fails("data:image/png;base64,!!!not*base64!!!", "invalid base64")
    assert_fails("QUJD" * 10 + "Q", "invalid base64")  # one char too many: never valid
    assert_fails("data:image/png,rawbytes", "only base64")
    assert_fails("data:image/png;base64", "malformed")


@pytest.mark.parametrize(
    ("shape", "dtype"),
    [
        ((4, 4, 2), np.float64),
        ((4, 4, 3), np.float32),
        ((4, 4, 5), np.uint8),
        ((4,), np.uint8),
        ((0, 4, 3), np.uint8),
        ((2, 4, 4, 3), np.uint8),
        ((4, 4), np.uint16),
    ],
)
def test_bad_arrays(shape: tuple[int, ...], dtype: type) -> None:
    array: np.ndarray = np.zeros(shape, dtype=dtype)
    err = assert_fails(array, "uint8")
    assert err.source == f"<ndarray {shape} {np.dtype(dtype)}>"


def test_unsupported_type() -> None:
    assert_fails(42, "unsupported input type", "<int>")


def test_error_is_a_value_error_with_source_and_reason(tmp_path: Path) -> None:
    err = assert_fails(tmp_path / "x.png")
    assert isinstance(err, ValueError)
    assert err.reason in str(err)


# --- decompression bombs ----------------------------------------------------------------


@pytest.fixture
def small_pil_limit(monkeypatch: pytest.MonkeyPatch) -> int:
    """Shrink PIL's own limit so that tiny images play decompression bombs."""
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)
    return 1000


@pytest.mark.parametrize("side", [40, 50])  # 1600 px: PIL warns; 2500 px: PIL raises
def test_pil_bomb_warning_and_error_become_image_load_errors(
    tmp_path: Path, small_pil_limit: int, side: int
) -> None:
    path = save(tmp_path, "bomb.png", noise((side, side)))
    with warnings.catch_warnings():
        warnings.simplefilter("always")  # as in production: nothing may leak as a warning
        assert_fails(path, "too large", max_pixels=small_pil_limit)
        assert load_image(path).size == (side, side)  # the per-call cap counts, not PIL's global
    assert small_pil_limit == Image.MAX_IMAGE_PIXELS


@pytest.mark.parametrize(
    ("name", "max_pixels"),
    [("a.png", None), ("a.tiff", None), ("a.png", 5000), ("a.tiff", 5000), ("a.gif", 3000)],
)
def test_our_cap_may_exceed_pil_limit_without_changing_it(
    tmp_path: Path, small_pil_limit: int, name: str, max_pixels: int | None
) -> None:
    image = noise((50, 50))
    path = save(tmp_path, name, image)
    loaded = load_image(path, max_pixels=max_pixels)
    assert loaded.size == (50, 50)
    if name != "a.gif":
        assert np.array_equal(pixels(loaded), np.asarray(image))
    assert small_pil_limit == Image.MAX_IMAGE_PIXELS


def test_default_cap_is_pils_default() -> None:
    assert Image.MAX_IMAGE_PIXELS == DEFAULT_MAX_PIXELS  # PIL's default, untouched by us


def test_threads_leave_pil_limit_alone(tmp_path: Path, small_pil_limit: int) -> None:
    small = save(tmp_path, "s.png", noise((20, 20)))
    big = save(tmp_path, "b.tiff", noise((50, 50)))
    errors: list[BaseException] = []

    def work(i: int) -> None:
        try:
            for _ in range(10):
                assert load_image(big, max_pixels=None).size == (50, 50)
                assert load_image(small).size == (20, 20)
                with pytest.raises(ImageLoadError):
                    load_image(big, max_pixels=900 + i)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert small_pil_limit == Image.MAX_IMAGE_PIXELS


# --- URLs -------------------------------------------------------------------------------

PNG = encode(noise((12, 10), seed=3))


class _Handler(http.server.BaseHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:  # keep test output clean
        pass

    def _send(
        self,
        status: int,
        ctype: str | None,
        body: bytes,
        length: bool = True,
        headers: dict[str, str] | None = None,
    ) -> None:
        self.send_response(status)
        if ctype:
            self.send_header("Content-Type", ctype)
        if length:
            self.send_header("Content-Length", str(len(body)))
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self) -> None:
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            self._route(self.path)  # the timeout tests' client hangs up early on purpose

    def _route(self, path: str) -> None:
        if path == "/img.png":
            self._send(200, "image/png", PNG)
        elif path == "/img.bin":
            self._send(200, "application/octet-stream; charset=binary", PNG)
        elif path == "/page.html":
            self._send(200, "text/html; charset=utf-8", b"<html>not an image</html>")
        elif path == "/untyped":
            self._send(200, None, PNG)
        elif path == "/big":
            self._send(200, "image/png", b"\0" * 5000)
        elif path == "/big-unsized":
            self._send(200, "image/png", b"\0" * 5000, length=False)
            self.close_connection = True
        elif path == "/slow":
            time.sleep(1.0)
            self._send(200, "image/png", PNG)
        elif path == "/drip":
            self._send(200, "image/png", b"", length=False, headers={"Content-Length": "1000"})
            for _ in range(100):
                self.wfile.write(b"x" * 10)
                self.wfile.flush()
                time.sleep(0.05)
        elif path.startswith("/redirect?"):
            self._send(302, "text/plain", b"", headers={"Location": path.split("?", 1)[1]})
        else:
            self._send(404, "text/plain", b"not found")


@pytest.fixture(scope="module")
def http_base() -> Iterator[str]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture
def base(http_base: str, monkeypatch: pytest.MonkeyPatch) -> str:
    """The loopback server's URL, with any proxy from the environment out of the way."""
    for key in list(os.environ):
        if key.lower().endswith("_proxy"):
            monkeypatch.delenv(key)
    return http_base


def test_url_gives_the_same_pixels_as_bytes(base: str) -> None:
    expected = pixels(load_image(PNG))
    assert np.array_equal(pixels(load_image(f"{base}/img.png")), expected)
    assert np.array_equal(pixels(load_image(f"{base}/img.bin")), expected)
    assert read_bytes(f"{base}/img.png") == PNG
    _, info = load_image_with_info(f"{base}/img.png")
    assert (info.uri, info.mime, info.size, info.mtime) == (
        f"{base}/img.png",
        "image/png",
        len(PNG),
        None,
    )


def test_url_content_type_is_checked(base: str) -> None:
    assert_fails(f"{base}/page.html", "Content-Type", "text/html")
    assert_fails(f"{base}/untyped", "Content-Type")


def test_url_byte_cap(base: str) -> None:
    assert_fails(f"{base}/big", "too large", "5000 bytes", max_bytes=4000)
    assert_fails(f"{base}/big-unsized", "too large", max_bytes=4000)  # capped while reading
    assert len(fetch_url(f"{base}/big-unsized", max_bytes=5000, timeout=5)) == 5000


def test_url_timeouts(base: str) -> None:
    start = time.monotonic()
    assert_fails(f"{base}/slow", "timed out", timeout=0.2)
    assert_fails(f"{base}/drip", "timed out", timeout=0.3)  # each read is quick, the whole is not
    assert time.monotonic() - start < 3.0  # the endpoints themselves take 1 s and 5 s


def test_url_http_errors_and_unreachable(base: str) -> None:
    assert_fails(f"{base}/missing.png", "HTTP 404")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        closed_port = s.getsockname()[1]  # bound but never listening: connection refused
        assert_fails(f"http://127.0.0.1:{closed_port}/a.png", "cannot fetch", timeout=2)


def test_url_redirects(base: str) -> None:
    assert np.array_equal(pixels(load_image(f"{base}/redirect?/img.png")), pixels(load_image(PNG)))
    assert_fails(f"{base}/redirect?file:///etc/passwd", "not allowed")
    assert_fails(f"{base}/redirect?ftp://127.0.0.1/a.png", "refused")


def test_url_allowed_hosts(base: str) -> None:
    assert (
        fetch_url(f"{base}/img.png", max_bytes=10**6, timeout=5, allowed_hosts={"127.0.0.1"}) == PNG
    )
    with pytest.raises(ImageLoadError, match="allowlist"):
        fetch_url(f"{base}/img.png", max_bytes=10**6, timeout=5, allowed_hosts={"example.com"})
    redirect_away = f"{base}/redirect?http://localhost:1/a.png"
    with pytest.raises(ImageLoadError, match="refused"):
        fetch_url(redirect_away, max_bytes=10**6, timeout=5, allowed_hosts={"127.0.0.1"})


def test_url_credentials_never_printed() -> None:
    text = describe_source("https://user:s3cret@example.com:8443/a.png?x=1")
    assert "s3cret" not in text
    assert text == "https://example.com:8443/a.png?x=1"


# --- draft ------------------------------------------------------------------------------


def test_draft_is_off_by_default_and_only_changes_jpeg_when_asked(tmp_path: Path) -> None:
    image = noise((256, 128))
    jpeg = save(tmp_path, "a.jpg", image, quality=90)
    plain = np.asarray(Image.open(jpeg).convert("RGB"))
    assert np.array_equal(pixels(load_image(jpeg)), plain)
    drafted = load_image(jpeg, draft=(64, 32))
    assert drafted.size == (64, 32)  # JPEG scales by 1/2, 1/4, 1/8: at least the asked size
    assert load_image(jpeg, draft=(100, 40)).size == (128, 64)
    png = save(tmp_path, "a.png", image)
    assert np.array_equal(pixels(load_image(png, draft=(64, 32))), np.asarray(image))


def test_draft_respects_exif_orientation(tmp_path: Path) -> None:
    exif = Image.Exif()
    exif[0x0112] = 6
    path = save(tmp_path, "r.jpg", noise((256, 128)), exif=exif)
    loaded, info = load_image_with_info(path, draft=(32, 64))
    assert loaded.size == (32, 64)
    assert (info.width, info.height) == (128, 256)  # the original, not the draft


def test_draft_must_be_positive(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="positive"):
        load_image(save(tmp_path, "a.jpg", noise()), draft=(0, 10))


# --- references, info, hashing, base64 --------------------------------------------------


def test_is_image_reference(tmp_path: Path) -> None:
    path = save(tmp_path, "a.png", noise())
    assert is_image_reference(str(path))
    assert is_image_reference("https://example.com/cat.jpg")
    assert is_image_reference("HTTP://EXAMPLE.COM/CAT")
    assert is_image_reference("data:image/png;base64,iVBORw0KGgo=")
    assert not is_image_reference(str(tmp_path))
    assert not is_image_reference(str(tmp_path / "missing.png"))
    assert not is_image_reference("a photo of a cat")
    assert not is_image_reference("file:///etc/passwd")
    assert not is_image_reference(base64.b64encode(PNG).decode())
    assert not is_image_reference("x" * 10_000)


def test_describe_source_forms(tmp_path: Path) -> None:
    b64 = base64.b64encode(bytes(66)).decode()
    assert len(b64) == 88
    assert describe_source(b64) == "<base64: 88 chars>"
    assert describe_source(bytes(1234)) == "<bytes: 1234 B>"
    assert describe_source(np.zeros((4, 4, 2))) == "<ndarray (4, 4, 2) float64>"
    assert describe_source(tmp_path / "a.png") == str(tmp_path / "a.png")
    assert describe_source(Image.new("L", (3, 2))) == "<PIL.Image L 3x2>"
    assert describe_source("data:image/png;base64,AAAA") == "<data URI: 26 chars>"
    assert len(describe_source("/" + "d" * 1000)) <= 160
    query = "a photo of a cat sitting on a red mat in the sun"
    assert describe_source(query) == query  # words with spaces are never taken for base64


def test_load_image_with_info_for_a_file(tmp_path: Path) -> None:
    path = save(tmp_path, "a.jpg", noise((30, 20)))
    data = path.read_bytes()
    image, info = load_image_with_info(path)
    assert image.size == (30, 20)
    assert info.sha256 == hashlib.sha256(data).hexdigest()
    assert (info.uri, info.mime, info.width, info.height) == (str(path), "image/jpeg", 30, 20)
    assert info.size == len(data)
    assert info.mtime == os.stat(path).st_mtime
    assert load_image_with_info(data)[1].uri is None
    assert load_image_with_info(data)[1].sha256 == info.sha256


def test_load_image_with_info_for_pixels() -> None:
    image = noise((7, 5))
    array = np.asarray(image).copy()
    _, from_pil = load_image_with_info(image)
    _, from_array = load_image_with_info(array)
    assert from_pil.sha256 == from_array.sha256  # same pixels, same hash
    assert from_pil.sha256 != load_image_with_info(array[:, :6])[1].sha256
    assert (from_array.uri, from_array.mtime, from_array.width, from_array.height) == (
        None,
        None,
        7,
        5,
    )
    assert from_array.size == 7 * 5 * 3
    assert from_array.mime == "application/octet-stream"
    assert load_image_with_info(Image.open(io.BytesIO(PNG)))[1].mime == "image/png"


def test_file_helpers(tmp_path: Path) -> None:
    path = save(tmp_path, "a.png", noise())
    stat = os.stat(path)
    assert file_fingerprint(path) == (stat.st_mtime, stat.st_size)
    assert sha256_file(path) == hashlib.sha256(path.read_bytes()).hexdigest()
    assert read_bytes(path) == path.read_bytes()
    with pytest.raises(ImageLoadError, match="nope"):
        file_fingerprint(tmp_path / "nope.png")
    with pytest.raises(ImageLoadError, match="nope"):
        sha256_file(tmp_path / "nope.png")
    with pytest.raises(ImageLoadError, match="already decoded"):
        read_bytes(noise())


def test_to_base64_respects_max_side(tmp_path: Path) -> None:
    path = save(tmp_path, "wide.png", noise((1000, 500)))
    shrunk = Image.open(io.BytesIO(base64.b64decode(to_base64(path, max_side=100))))
    assert (shrunk.format, shrunk.size) == ("JPEG", (100, 50))
    kept = Image.open(io.BytesIO(base64.b64decode(to_base64(path, max_side=None, format="png"))))
    assert (kept.format, kept.size) == ("PNG", (1000, 500))
    small = Image.open(io.BytesIO(base64.b64decode(to_base64(noise((50, 20)), max_side=100))))
    assert small.size == (50, 20)  # never enlarged


def test_to_data_uri_round_trips(tmp_path: Path) -> None:
    image = noise((64, 32))
    uri = to_data_uri(image, format="PNG")
    assert uri.startswith("data:image/png;base64,")
    assert np.array_equal(pixels(load_image(uri)), np.asarray(image))
    assert to_data_uri(image).startswith("data:image/jpeg;base64,")


def test_read_encoded_gives_the_path_and_mtime_of_the_file_it_read(tmp_path: Path) -> None:
    path = save(tmp_path, "a.png", noise())
    encoded = read_encoded(path)
    stat = os.stat(path)
    assert (encoded.data, encoded.uri) == (path.read_bytes(), str(path))
    assert (encoded.mtime, encoded.mtime_ns) == (stat.st_mtime, stat.st_mtime_ns)
    assert read_encoded(path.read_bytes()) == (path.read_bytes(), None, None, None)


def test_read_header_agrees_with_load_image_without_decoding(tmp_path: Path) -> None:
    exif = Image.Exif()
    exif[0x0112] = 6
    rotated = save(tmp_path, "r.jpg", noise((40, 20)), exif=exif).read_bytes()
    for data in (rotated, encode(noise((30, 20)), "PNG"), encode(noise(), "WEBP")):
        header = read_header(data)
        image, info = load_image_with_info(data)
        assert (header.mime, header.width, header.height) == (info.mime, *image.size)
        assert header.decode_cost >= image.width * image.height * 3
    with pytest.raises(ImageLoadError, match="not an image PIL can decode"):
        read_header(b"not an image at all")
