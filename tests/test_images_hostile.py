"""The loader, the index and the service against hostile inputs.

Special files (devices, FIFOs, links to them), paths and URLs that make the stdlib raise
odd types, a decoder that crashes, and small files that decode to gigabytes. Each one must
be an `ImageLoadError` naming the input (a typed 4xx on the server), and a batch must carry
on past it.
"""

from __future__ import annotations

import io
import json
import os
import re
import struct
import subprocess
import sys
import threading
import uuid
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import chromadb
import numpy as np
import pytest
from fastapi.testclient import TestClient
from PIL import Image, features

from clip_multimodal.errors import ImageLoadError
from clip_multimodal.images import (
    DEFAULT_MAX_DECODE_BYTES,
    decode_cost,
    describe_source,
    load_image,
    read_bytes,
    read_header,
    sha256_file,
)
from clip_multimodal.index import ImageIndex, read_image_source
from clip_multimodal.server import ServerSettings, create_app

ROOT = Path(__file__).resolve().parents[1]
MiB = 2**20

# Each made the stdlib raise something other than ImageLoadError before.
ODD_STRINGS = {
    "nul": "a\x00b.png",  # ValueError: embedded null byte
    "no such user": "~nosuchuser-clip-mm/x.png",  # RuntimeError from expanduser
    "name too long": "x" * 300 + ".png",  # OSError ENAMETOOLONG from is_dir
    "lone surrogate": "\ud800.png",  # UnicodeEncodeError
    "unclosed IPv6": "http://[::1/x.png",  # ValueError from urlsplit
    "unclosed IPv6 with credentials": "http://me:secret@[::1/x.png",
}


def _png(color: tuple[int, int, int] = (200, 30, 30)) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (20, 20), color).save(buffer, format="PNG")
    return buffer.getvalue()


def _within(seconds: float, call: Callable[[], Any], unblock: Callable[[], None]) -> Any:
    """Run `call` in a thread; fail (after `unblock`ing it) if it takes longer than `seconds`."""
    outcome: dict[str, Any] = {}

    def run() -> None:
        try:
            outcome["value"] = call()
        except BaseException as exc:  # handed to the test thread
            outcome["error"] = exc

    worker = threading.Thread(target=run, daemon=True)
    worker.start()
    worker.join(seconds)
    if worker.is_alive():
        unblock()
        worker.join(5)
        pytest.fail(f"still running after {seconds}s")
    if "error" in outcome:
        raise outcome["error"]
    return outcome.get("value")


def _unblock_fifo(path: Path) -> Callable[[], None]:
    def unblock() -> None:
        os.close(os.open(path, os.O_RDWR | os.O_NONBLOCK))  # a writer lets a blocked open go

    return unblock


@pytest.fixture(scope="module")
def corrupt_avif() -> bytes:
    """A damaged AVIF on which Pillow's AVIF plugin raises RuntimeError (found by fuzzing)."""
    if not features.check("avif"):
        pytest.skip("this Pillow has no AVIF support")
    buffer = io.BytesIO()
    noise = np.random.default_rng(0).integers(0, 256, (16, 16, 3), dtype=np.uint8)
    Image.fromarray(noise).save(buffer, format="AVIF", quality=50)
    good = buffer.getvalue()
    for position in range(len(good)):
        for value in (0, 0xFF):
            bad = bytearray(good)
            bad[position] = value
            try:
                Image.open(io.BytesIO(bytes(bad))).load()
            except (OSError, ValueError, SyntaxError, EOFError):
                continue
            except Exception:  # the kind this test needs: not one PIL documents
                return bytes(bad)
    pytest.skip("no single-byte damage makes this Pillow's AVIF decoder raise an odd type")


# -- special files ------------------------------------------------------------------------

CHILD = """
import json, resource, sys
resource.setrlimit(resource.RLIMIT_AS, (3 * 2**30, 3 * 2**30))  # a regression fails, not OOMs
from clip_multimodal.errors import ImageLoadError
from clip_multimodal.images import load_image, read_bytes, sha256_file
out = []
for path in sys.argv[1:]:
    for call in (load_image, read_bytes, sha256_file):
        try:
            call(path)
            out.append([path, call.__name__, "returned"])
        except ImageLoadError as exc:
            out.append([path, call.__name__, exc.reason])
        except BaseException as exc:
            out.append([path, call.__name__, f"escaped {type(exc).__name__}"])
print(json.dumps(out))
"""


@pytest.mark.skipif(not Path("/dev/zero").exists(), reason="needs /dev/zero and /dev/urandom")
def test_devices_and_links_to_them_are_refused_unread(tmp_path: Path) -> None:
    """In a child with a 3 GB address-space cap and a timeout: reading /dev/zero used to
    go on until memory ran out."""
    link = tmp_path / "innocent.png"
    link.symlink_to("/dev/zero")
    paths = ["/dev/zero", "/dev/urandom", str(link), "~/../../dev/zero"]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    child = subprocess.run(
        [sys.executable, "-c", CHILD, *paths], capture_output=True, text=True, timeout=60, env=env
    )
    assert child.returncode == 0, child.stderr[-2000:]
    results = json.loads(child.stdout)
    assert len(results) == 3 * len(paths)
    for path, call, reason in results:
        assert reason == "is a device, not a regular file; only regular files are read", (
            path,
            call,
        )


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs FIFOs")
def test_a_fifo_named_like_an_image_is_refused_at_once(tmp_path: Path) -> None:
    fifo = tmp_path / "x.png"
    os.mkfifo(fifo)
    for call in (load_image, read_bytes, sha256_file, read_image_source):
        with pytest.raises(ImageLoadError, match="is a FIFO, not a regular file"):
            _within(10, lambda call=call: call(str(fifo)), _unblock_fifo(fifo))


def test_a_directory_is_refused(tmp_path: Path) -> None:
    for source in (tmp_path, str(tmp_path)):
        with pytest.raises(ImageLoadError, match="is a directory"):
            load_image(source)


@pytest.mark.skipif(not Path("/proc/self/maps").is_file(), reason="needs Linux /proc")
def test_a_regular_file_is_read_no_further_than_max_bytes() -> None:
    """/proc files are regular files that say they hold 0 bytes and give more: like a file
    growing while it is read, only the read loop's own cap can stop them."""
    assert os.stat("/proc/self/maps").st_size == 0
    with pytest.raises(ImageLoadError, match="too large: 101 bytes exceeds max_bytes=100"):
        read_bytes("/proc/self/maps", max_bytes=100)


def test_a_file_over_max_bytes_is_refused_before_reading(tmp_path: Path) -> None:
    path = tmp_path / "big.png"
    path.write_bytes(_png() + b"\0" * 1000)
    with pytest.raises(ImageLoadError, match="exceeds max_bytes=500"):
        load_image(path, max_bytes=500)
    assert load_image(path).size == (20, 20)  # trailing bytes after IEND are tolerated


# -- odd strings: every one an ImageLoadError ---------------------------------------------


@pytest.mark.parametrize("text", ODD_STRINGS.values(), ids=ODD_STRINGS.keys())
def test_odd_paths_and_urls_raise_image_load_error(text: str) -> None:
    for call in (load_image, read_bytes, read_image_source):
        with pytest.raises(ImageLoadError) as info:
            call(text)
        assert info.value.source == describe_source(text)
    assert "secret" not in describe_source(text)


def test_a_decoder_crash_is_an_image_load_error(corrupt_avif: bytes) -> None:
    with pytest.raises(RuntimeError):  # what Pillow itself raises on it
        Image.open(io.BytesIO(corrupt_avif)).load()
    with pytest.raises(ImageLoadError, match="RuntimeError") as info:
        load_image(corrupt_avif)
    assert info.value.source == f"<bytes: {len(corrupt_avif)} B>"


# -- a batch carries on past each of them --------------------------------------------------


def test_index_add_stores_the_good_input_and_reports_each_bad_one(
    tmp_path: Path, demo_encoder: Any, corrupt_avif: bytes
) -> None:
    good = tmp_path / "good.png"
    good.write_bytes(_png())
    fifo = tmp_path / "x.png"
    os.mkfifo(fifo)
    link = tmp_path / "zero.png"
    link.symlink_to("/dev/zero")
    bad: list[Any] = [*ODD_STRINGS.values(), corrupt_avif, str(fifo), link]
    client = chromadb.PersistentClient(path=str(tmp_path / "chroma"))
    index = ImageIndex(demo_encoder, f"hostile-{uuid.uuid4().hex[:8]}", client=client)

    report = _within(120, lambda: index.add([str(good), *bad]), _unblock_fifo(fifo))

    assert report.added == 1 and index.count() == 1
    assert report.ids[0] is not None and report.ids[1:] == [None] * len(bad)
    assert [f.source for f in report.failed] == [describe_source(b) for b in bad]
    reasons = [f.reason for f in report.failed]
    assert "RuntimeError" in reasons[len(ODD_STRINGS)]
    assert "FIFO" in reasons[-2] and "device" in reasons[-1]


# -- the service answers a crashing decoder with a typed 400 --------------------------------


@pytest.fixture(scope="module")
def api(tmp_path_factory: pytest.TempPathFactory, demo_encoder: Any) -> Any:
    root = tmp_path_factory.mktemp("hostile-server")
    client = chromadb.PersistentClient(path=str(root / "chroma"))
    name = f"hostile-{uuid.uuid4().hex[:8]}"
    ImageIndex(demo_encoder, name, client=client).add([_png()])
    settings = ServerSettings(collection=name, data_dir=root, max_decode_bytes=64 * MiB)
    with TestClient(create_app(settings, encoder=demo_encoder, client=client)) as http:
        yield http


@pytest.mark.parametrize(
    ("path", "data"),
    [("/v1/embed/image", {}), ("/v1/search", {"k": "2"}), ("/v1/classify", {"labels": "a,b"})],
)
def test_a_decoder_crash_is_a_typed_client_error_on_every_image_endpoint(
    api: Any, corrupt_avif: bytes, path: str, data: dict[str, str]
) -> None:
    field = "files" if path == "/v1/embed/image" else "file"
    files = {field: ("bad.avif", corrupt_avif, "image/avif")}
    response = api.post(path, files=files, data=data)
    if path == "/v1/embed/image":  # a batch: the item fails, the request does not
        assert response.status_code == 200, response.text
        body = response.json()
        assert body["embeddings"] == [None] and "RuntimeError" in body["errors"][0]["message"]
        return
    assert response.status_code == 400, response.text
    assert response.json()["error"]["type"] == "invalid_image"


# -- the decode budget ----------------------------------------------------------------------


def _png_chunk(tag: bytes, data: bytes) -> bytes:
    crc = zlib.crc32(tag + data) & 0xFFFFFFFF
    return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", crc)


def flat_png(side: int, bit_depth: int, color_type: int, sample: bytes) -> bytes:
    """A side x side PNG of one repeated pixel, written row by row (never held decoded)."""
    header = struct.pack(">IIBBBBB", side, side, bit_depth, color_type, 0, 0, 0)
    row = b"\x00" + sample * side
    packer = zlib.compressobj(9)
    body = b"".join(packer.compress(row) for _ in range(side)) + packer.flush()
    idat = _png_chunk(b"IDAT", body)
    return b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", header) + idat + _png_chunk(b"IEND", b"")


GIANTS = {  # 9400 x 9400 each: under the pixel cap, a few hundred KB at most on disk
    "16-bit grey PNG": "grey16.png",
    "16-bit RGB PNG": "rgb16.png",
    "lossless RGBA WebP": "rgba.webp",
    "lossless RGB WebP": "rgb.webp",
}

MAKE_WEBPS = """
import sys
from PIL import Image
side = 9400
Image.new("RGBA", (side, side), (10, 200, 30, 128)).save(sys.argv[1], lossless=True)
Image.new("RGB", (side, side), (10, 200, 30)).save(sys.argv[2], lossless=True)
"""


@pytest.fixture(scope="module")
def giants(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("giants")
    (folder / "grey16.png").write_bytes(flat_png(9400, 16, 0, b"\x9c\x40"))
    (folder / "rgb16.png").write_bytes(flat_png(9400, 16, 2, b"\x12\x34\x56\x78\x9a\xbc"))
    # Encoding needs the decoded pixels (1.4 GB): a child process, so this one stays small.
    webps = [str(folder / "rgba.webp"), str(folder / "rgb.webp")]
    subprocess.run([sys.executable, "-c", MAKE_WEBPS, *webps], check=True, timeout=300)
    return folder


# VmHWM, not ru_maxrss: Linux carries ru_maxrss over exec, so a child forked from a big
# pytest process would report the parent's size.
PEAK = """
import json, sys
from clip_multimodal.errors import ImageLoadError
from clip_multimodal.images import load_image
try:
    outcome = "decoded %dx%d" % load_image(sys.argv[1]).size
except ImageLoadError as exc:
    outcome = "refused: " + exc.reason
peak = next(int(l.split()[1]) for l in open("/proc/self/status") if l.startswith("VmHWM"))
print(json.dumps([outcome, peak * 1024]))
"""


@pytest.mark.slow
@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="needs Linux /proc")
@pytest.mark.parametrize("name", GIANTS.values(), ids=GIANTS.keys())
def test_small_files_that_decode_to_gigabytes_stay_under_1_2_gb(giants: Path, name: str) -> None:
    """Each 9400x9400 file decodes within the default budget or is refused from its header;
    either way the child process peaks under 1.2 GB (before the budget: 2.4 GB for the
    16-bit grey PNG, 2.7 GB for the RGBA WebP)."""
    path = giants / name
    assert path.stat().st_size < 1_000_000
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    child = subprocess.run(
        [sys.executable, "-c", PEAK, str(path)],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
    )
    assert child.returncode == 0, child.stderr[-2000:]
    outcome, peak = json.loads(child.stdout)
    assert outcome == "decoded 9400x9400" or outcome.startswith("refused: too large to decode")
    assert peak < 1.2e9, (outcome, peak)


@pytest.mark.slow
def test_the_budget_refuses_from_the_header_and_names_the_setting(giants: Path) -> None:
    data = (giants / "rgba.webp").read_bytes()
    with pytest.raises(ImageLoadError) as info:
        load_image(data)
    reason = info.value.reason
    assert reason.startswith("too large to decode: 9400x9400 WEBP RGBA needs about ")
    assert f"max_decode_bytes={DEFAULT_MAX_DECODE_BYTES}" in reason
    header = read_header(data, max_decode_bytes=None)
    assert header.decode_cost > DEFAULT_MAX_DECODE_BYTES
    with pytest.raises(ImageLoadError, match="too large to decode"):
        read_header(data)


@pytest.mark.slow
def test_the_budget_is_configurable(giants: Path) -> None:
    data = (giants / "rgb16.png").read_bytes()
    assert load_image(data).size == (9400, 9400)  # 16-bit RGB is stored as 8-bit RGB
    with pytest.raises(ImageLoadError, match="max_decode_bytes=1048576 "):
        load_image(data, max_decode_bytes=MiB)
    small = _png()
    assert load_image(small, max_decode_bytes=None).size == (20, 20)
    with pytest.raises(ImageLoadError, match="too large to decode"):
        load_image(small, max_decode_bytes=1000)


@pytest.mark.slow
def test_the_index_refuses_an_over_budget_image_from_its_header(giants: Path) -> None:
    with pytest.raises(ImageLoadError, match="too large to decode"):
        read_image_source(giants / "grey16.png")


VMHWM = """
import json, sys
from PIL import Image
from clip_multimodal.images import decode_cost, load_image

def kib(key):
    return int(next(l for l in open("/proc/self/status") if l.startswith(key)).split()[1])

data = open(sys.argv[1], "rb").read()
cost = decode_cost(Image.open(sys.argv[1]))
load_image(sys.argv[2], max_decode_bytes=None)  # a small one of the kind: loads code, plugins
open("/proc/self/clear_refs", "w").write("5")  # resets the peak (VmHWM) to the current RSS
before = kib("VmRSS")
load_image(data, max_decode_bytes=None)
print(json.dumps([cost, (kib("VmHWM") - before) * 1024]))
"""


def _sample(kind: str, path: Path, side: int = 2000) -> None:
    rng = np.random.default_rng(1)
    pixels = rng.integers(0, 256, (side, side, 4), dtype=np.uint8)
    pixels[: side // 2] = 90  # half flat: quick to encode
    rgba = Image.fromarray(pixels)
    images = {
        "png-rgba": (rgba, {}),
        "png-grey16": (Image.fromarray(pixels[:, :, 0].astype(np.uint16) * 257), {}),
        "jpeg-cmyk": (rgba.convert("CMYK"), {"format": "JPEG"}),
        "webp-lossless": (rgba.convert("RGB"), {"format": "WEBP", "lossless": True}),
        "webp-rgba": (rgba, {"format": "WEBP"}),
        "tiff-float": (Image.fromarray(pixels[:, :, 0].astype(np.float32) / 255), {}),
    }
    image, params = images[kind]
    image.save(path, **params)


@pytest.mark.slow
@pytest.mark.skipif(not Path("/proc/self/clear_refs").exists(), reason="needs Linux /proc")
@pytest.mark.parametrize(
    "kind", ["png-rgba", "png-grey16", "jpeg-cmyk", "webp-lossless", "webp-rgba", "tiff-float"]
)
def test_decode_cost_bounds_the_memory_decoding_takes(tmp_path: Path, kind: str) -> None:
    """The estimate from the header is at least the peak memory the decode really adds."""
    suffix = {"png": ".png", "jpeg": ".jpg", "webp": ".webp", "tiff": ".tif"}[kind.split("-")[0]]
    path, small = tmp_path / f"sample{suffix}", tmp_path / f"small{suffix}"
    _sample(kind, path)
    _sample(kind, small, side=16)
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    child = subprocess.run(
        [sys.executable, "-c", VMHWM, str(path), str(small)],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
    )
    assert child.returncode == 0, child.stderr[-2000:]
    cost, used = json.loads(child.stdout)
    assert used > 4 * 2000 * 2000 * 0.9  # it did decode (at least the stored RGBA/float)
    assert used <= cost, f"{kind}: used {used / MiB:.1f} MiB, estimated {cost / MiB:.1f} MiB"


@pytest.mark.parametrize("mode", ["RGBA", "LA", "P", "I;16", "I", "F", "CMYK", "1", "L"])
def test_converting_in_strips_gives_the_pixels_of_a_whole_image_conversion(
    mode: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    rng = np.random.default_rng(2)
    if mode in ("I;16", "I", "F"):
        values = rng.integers(0, 60000, (37, 23)).astype(np.float32 if mode == "F" else np.int32)
        image = Image.fromarray(values).convert(mode) if mode != "I;16" else None
        image = image or Image.fromarray(values.astype(np.uint16))
    else:
        image = Image.fromarray(rng.integers(0, 256, (37, 23, 4), dtype=np.uint8)).convert(mode)
        if mode == "P":
            image.info["transparency"] = 3
    buffer = io.BytesIO()
    image.save(buffer, format="TIFF" if mode in ("I", "F", "CMYK", "LA") else "PNG")
    data = buffer.getvalue()
    whole = np.asarray(load_image(data))
    monkeypatch.setattr("clip_multimodal._pixels._STRIP_PIXELS", 50)  # two rows a strip
    assert np.array_equal(np.asarray(load_image(data)), whole)


def test_the_server_refuses_an_image_over_its_decode_budget_with_413(api: Any) -> None:
    big = io.BytesIO()
    Image.new("RGBA", (4000, 4000), (1, 2, 3, 4)).save(big, format="PNG")  # ~128 MiB decoded
    assert decode_cost(Image.open(big)) > 64 * MiB
    for path, field in [("/v1/embed/image", "files"), ("/v1/search", "file")]:
        files = {field: ("big.png", big.getvalue(), "image/png")}
        response = api.post(path, files=files)
        assert response.status_code == 413, response.text
        message = response.json()["error"]["message"]
        assert "decode budget is 64 MiB (--max-decode-mb)" in message


def test_the_server_passes_its_budget_to_the_encoder_it_loads() -> None:
    from clip_multimodal.server.app import _load_encoder

    encoder = _load_encoder(ServerSettings(max_decode_bytes=1234567, device="cpu"))
    assert getattr(encoder, "max_decode_bytes", None) == 1234567
    with pytest.raises(ImageLoadError, match="max_decode_bytes=1234567"):
        encoder.embed_images([flat_png(1000, 8, 6, b"\1\2\3\4")])


@pytest.mark.slow
def test_ten_small_pngs_that_decode_to_gigabytes_are_refused_at_once(
    giants: Path, demo_encoder: Any, tmp_path: Path
) -> None:
    """Ten 16-bit 9400x9400 PNGs in one 2 MB request once took the server to 5.6 GB; with
    the default budget the request is refused from the headers, before any decoding."""
    client = chromadb.PersistentClient(path=str(tmp_path / "chroma"))
    settings = ServerSettings(collection="ten-giants", data_dir=tmp_path)
    assert settings.max_decode_bytes == DEFAULT_MAX_DECODE_BYTES
    data = (giants / "grey16.png").read_bytes()
    files = [("files", (f"{i}.png", data, "image/png")) for i in range(10)]
    with TestClient(create_app(settings, encoder=demo_encoder, client=client)) as http:
        response = http.post("/v1/embed/image", files=files)
    assert response.status_code == 413, response.text
    message = response.json()["error"]["message"]
    assert re.match(
        r"image 0 would need about \d+ MiB to decode; this server's decode budget is 512 MiB",
        message,
    )
