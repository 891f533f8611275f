"""Weights download wherever open_clip's would (a mirror, a proxy, a slow link), and an
unreachable source fails fast. Everything runs on loopback: a small hub emulation, a forward
proxy and a listener that lets connections in only after a delay.

The mirror case runs in a subprocess with the environment a user would set: huggingface_hub
reads HF_ENDPOINT when it is imported, as the user's process does. The other cases run here,
with huggingface_hub's constants patched and its HTTP session rebuilt (it reads the proxy
variables when it is built).
"""

from __future__ import annotations

import hashlib
import http.client
import json
import os
import shutil
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import numpy as np
import open_clip
import pytest
import torch
from PIL import Image
from safetensors.torch import save_file

from clip_multimodal import CLIPEncoder, ModelNotAvailableError
from clip_multimodal.chroma import CLIPEmbeddingFunction
from clip_multimodal.cli import main
from clip_multimodal.models import (
    DEFAULT_PRETRAINED,
    DEMO_MODEL_DIR,
    OPENAI_NAMES,
    ModelSpec,
    resolve_model,
)

COMMIT = "0123456789abcdef0123456789abcdef01234567"
QUERY = "a red circle"


class Hub(ThreadingHTTPServer):
    """The hub's file endpoints, `/{repo}/resolve/{revision}/{file}`, with the headers
    huggingface_hub reads (X-Repo-Commit, ETag, Content-Length), and plain files by path."""

    daemon_threads = True

    def __init__(self, address: tuple[str, int], *, activate: bool = True) -> None:
        super().__init__(address, _HubHandler, bind_and_activate=activate)
        self.files: dict[str, Path] = {}
        self.repos: dict[str, dict[str, Path]] = {}
        self.requests: list[str] = []

    def serve_repo(self, repo: str, folder: Path, names: list[str]) -> None:
        for name in names:
            for revision in ("main", COMMIT):  # snapshot_download asks by the resolved commit
                self.files[f"/{repo}/resolve/{revision}/{name}"] = folder / name
        self.repos[repo] = {name: folder / name for name in names}

    def api(self, path: str) -> Any:
        """The two API answers snapshot_download reads: the revision's commit, and the tree."""
        for repo, files in self.repos.items():
            if path == f"/api/models/{repo}/revision/main":
                siblings = [{"rfilename": name} for name in files]
                return {"id": repo, "sha": COMMIT, "siblings": siblings}
            if path.split("?")[0] == f"/api/models/{repo}/tree/{COMMIT}":
                return [
                    {"type": "file", "path": name, "size": f.stat().st_size, "oid": _oid(f)}
                    for name, f in files.items()
                ]
        return None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"


class _HubHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as the real hub
    server: Hub

    def do_HEAD(self) -> None:
        self._answer(body=False)

    def do_GET(self) -> None:
        self._answer(body=True)

    def _answer(self, *, body: bool) -> None:
        self.server.requests.append(f"{self.command} {self.path}")
        answer = self.server.api(self.path)
        if answer is not None:
            data = json.dumps(answer).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            if body:
                self.wfile.write(data)
            return
        path = self.server.files.get(self.path)
        if path is None:
            self.send_response(404)
            self.send_header("X-Error-Code", "EntryNotFound")
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        size = path.stat().st_size
        self.send_response(200)
        self.send_header("X-Repo-Commit", COMMIT)
        self.send_header("ETag", f'"{_oid(path)}"')
        self.send_header("Content-Length", str(size))
        self.end_headers()
        if body:
            with path.open("rb") as f:
                shutil.copyfileobj(f, self.wfile)

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet."""


def _oid(path: Path) -> str:
    return hashlib.sha256(str(path).encode()).hexdigest()


class Proxy(ThreadingHTTPServer):
    """A forward proxy for http:// URLs (absolute-form requests), with its own name table:
    it reaches hosts the client cannot resolve, as a corporate proxy does."""

    daemon_threads = True

    def __init__(self, hosts: dict[str, tuple[str, int]]) -> None:
        super().__init__(("127.0.0.1", 0), _ProxyHandler)
        self.hosts = hosts
        self.forwarded: list[str] = []

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"


class _ProxyHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: Proxy

    def do_HEAD(self) -> None:
        self._forward()

    def do_GET(self) -> None:
        self._forward()

    def _forward(self) -> None:
        target = urlsplit(self.path)
        assert target.hostname and target.scheme == "http", self.path
        self.server.forwarded.append(f"{self.command} {self.path}")
        host, port = self.server.hosts.get(target.hostname, (target.hostname, target.port or 80))
        upstream = http.client.HTTPConnection(host, port, timeout=30)
        query = f"?{target.query}" if target.query else ""
        upstream.request(self.command, target.path + query, headers=dict(self.headers))
        response = upstream.getresponse()
        self.send_response(response.status)
        for name, value in response.getheaders():
            if name.lower() not in ("connection", "transfer-encoding", "keep-alive"):
                self.send_header(name, value)
        self.end_headers()
        if self.command != "HEAD":
            shutil.copyfileobj(response, self.wfile)
        upstream.close()

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet."""


def _running(server: ThreadingHTTPServer) -> Iterator[Any]:
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture
def hub() -> Iterator[Hub]:
    yield from _running(Hub(("127.0.0.1", 0)))


@pytest.fixture
def slow_hub() -> Iterator[Hub]:
    """A hub whose listen queue stays full for its first 2.5 s: connecting takes ~3 s, as over
    a slow link (the kernel drops the SYNs and the client retries them)."""
    server = Hub(("127.0.0.1", 0), activate=False)
    server.server_bind()
    server.socket.listen(0)
    filler = socket.create_connection(server.server_address)  # fills the queue of one

    def open_later() -> None:
        time.sleep(2.5)
        waiting, _ = server.socket.accept()
        waiting.close()
        server.socket.listen(16)
        server.serve_forever()

    thread = threading.Thread(target=open_later, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()
        filler.close()


DEMO_FILES = ["open_clip_config.json", "open_clip_model.safetensors"]
_SCRIPT = """
import json, sys
from clip_multimodal import CLIPEncoder
enc = CLIPEncoder(sys.argv[1], device="cpu")
text = enc.embed_texts([sys.argv[2]])[0].tolist()
print(json.dumps({"model_id": enc.model_id, "text": text}))
"""
_CLEARED = ("HF_", "HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "NO_PROXY", "TRANSFORMERS_OFFLINE")


def _load_as_user(tmp_path: Path, env: dict[str, str], model: str) -> dict[str, Any]:
    """Load `model` in a fresh process, with empty caches and the user's variables `env`."""
    clean = {k: v for k, v in os.environ.items() if not k.upper().startswith(_CLEARED)}
    clean.update(HOME=str(tmp_path / "home"), HF_HOME=str(tmp_path / "hf-home"), **env)
    done = subprocess.run(
        [sys.executable, "-c", _SCRIPT, model, QUERY],
        env=clean,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def _demo_vector(demo_encoder: CLIPEncoder) -> np.ndarray:
    return np.asarray(demo_encoder.embed_texts([QUERY])[0])


_PROXY_VARS = ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "NO_PROXY")


class HubSettings:
    """The hub settings of this process, as a user's environment would give them."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, cache: Path) -> None:
        import huggingface_hub.constants as constants

        self._patch = monkeypatch
        self._constants = constants
        self.cache(cache / "hf")
        monkeypatch.setenv("HOME", str(cache / "home"))
        for name in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"):
            monkeypatch.delenv(name, raising=False)
        for name in _PROXY_VARS:
            monkeypatch.delenv(name, raising=False)
            monkeypatch.delenv(name.lower(), raising=False)
        # https URLs (OpenAI's weights) go to a proxy that refuses: no test reaches the internet.
        monkeypatch.setenv("HTTPS_PROXY", f"http://127.0.0.1:{_refused_port()}")
        self.endpoint(f"http://127.0.0.1:{_refused_port()}")
        _new_sessions()

    def cache(self, path: Path) -> None:
        """HF_HUB_CACHE, as huggingface_hub read it when imported."""
        self._patch.setattr(self._constants, "HF_HUB_CACHE", str(path))

    def endpoint(self, url: str) -> None:
        """HF_ENDPOINT, as huggingface_hub read it when imported."""
        self._patch.setattr(self._constants, "ENDPOINT", url)
        template = url + "/{repo_id}/resolve/{revision}/{filename}"
        self._patch.setattr(self._constants, "HUGGINGFACE_CO_URL_TEMPLATE", template)

    def proxy(self, url: str, no_proxy: str = "") -> None:
        self._patch.setenv("HTTP_PROXY", url)
        if no_proxy:
            self._patch.setenv("NO_PROXY", no_proxy)
        _new_sessions()


def _new_sessions() -> None:
    """huggingface_hub's session and urllib's opener read the proxy variables when built:
    drop them, so the next request builds them from the environment of now."""
    from huggingface_hub import close_session

    close_session()
    urllib.request.install_opener(None)  # type: ignore[arg-type]


@pytest.fixture
def settings(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[HubSettings]:
    """This process's hub settings: at first a hub nothing listens on, https through a proxy
    that refuses, and empty caches."""
    yield HubSettings(monkeypatch, tmp_path)
    _new_sessions()  # later tests get sessions built from their own environment


def _refused_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])  # closed again: nothing listens there


def _assert_demo(encoder: CLIPEncoder, demo_encoder: CLIPEncoder) -> None:
    assert encoder.model_id == demo_encoder.model_id.replace(
        demo_encoder.model_id.split("@")[0], "hf-hub:acme/demo-clip"
    )
    np.testing.assert_allclose(
        encoder.embed_texts([QUERY]), demo_encoder.embed_texts([QUERY]), atol=1e-5
    )


def test_hf_hub_model_downloads_from_a_mirror_on_its_own_port(
    tmp_path: Path,
    hub: Hub,
    demo_encoder: CLIPEncoder,
    settings: HubSettings,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """As the user runs it: HF_ENDPOINT in the environment of a fresh process."""
    hub.serve_repo("acme/demo-clip", DEMO_MODEL_DIR, DEMO_FILES)
    got = _load_as_user(tmp_path, {"HF_ENDPOINT": hub.url}, "hf-hub:acme/demo-clip")
    np.testing.assert_allclose(got["text"], demo_encoder.embed_texts([QUERY])[0], atol=1e-5)
    # The id names the weights, the same as when they load from the cache, offline.
    settings.cache(tmp_path / "hf-home" / "hub")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert resolve_model("hf-hub:acme/demo-clip", None).model_id == got["model_id"]
    assert got["model_id"].split("@")[1] == demo_encoder.model_id.split("@")[1]


def test_download_through_a_proxy_when_the_hub_name_does_not_resolve(
    hub: Hub, demo_encoder: CLIPEncoder, settings: HubSettings
) -> None:
    hub.serve_repo("acme/demo-clip", DEMO_MODEL_DIR, DEMO_FILES)
    for proxy in _running(Proxy({"hub.invalid": ("127.0.0.1", hub.server_address[1])})):
        settings.endpoint("http://hub.invalid:8080")
        settings.proxy(proxy.url)
        _assert_demo(CLIPEncoder("hf-hub:acme/demo-clip", device="cpu"), demo_encoder)
        assert any(r.endswith("/open_clip_model.safetensors") for r in proxy.forwarded)


def test_no_proxy_reaches_the_mirror_directly(hub: Hub, settings: HubSettings) -> None:
    hub.serve_repo("acme/demo-clip", DEMO_MODEL_DIR, DEMO_FILES)
    for proxy in _running(Proxy({})):
        settings.endpoint(hub.url)
        settings.proxy(proxy.url, no_proxy="127.0.0.1")
        resolve_model("hf-hub:acme/demo-clip", None)
        assert proxy.forwarded == [] and hub.requests


def test_a_slow_link_still_downloads(
    slow_hub: Hub, demo_encoder: CLIPEncoder, settings: HubSettings
) -> None:
    slow_hub.serve_repo("acme/demo-clip", DEMO_MODEL_DIR, DEMO_FILES)
    settings.endpoint(slow_hub.url)
    start = time.monotonic()
    encoder = CLIPEncoder("hf-hub:acme/demo-clip", device="cpu")
    assert time.monotonic() - start > 2.0  # the first connection took that long: not given up
    _assert_demo(encoder, demo_encoder)


@pytest.mark.slow
def test_an_openai_name_downloads_its_tag_from_the_mirror(
    tmp_path: Path, hub: Hub, settings: HubSettings
) -> None:
    """`RN50` means open_clip's RN50 with pretrained "openai", whose weights live in the hub
    repo timm/resnet50_clip.openai; the mirror serves random weights of that architecture."""
    repo = open_clip.get_pretrained_cfg("RN50", "openai")["hf_hub"].strip("/")
    torch.manual_seed(0)
    model = open_clip.create_model("RN50", force_quick_gelu=True)
    state = {k: v.half().contiguous() for k, v in model.state_dict().items()}  # half the bytes
    files = tmp_path / "served"
    files.mkdir()
    save_file(state, str(files / "open_clip_model.safetensors"))
    hub.serve_repo(repo, files, ["open_clip_model.safetensors"])
    settings.endpoint(hub.url)
    encoder = CLIPEncoder("RN50", device="cpu", precision="fp32")  # open_clip's reference is fp32
    assert encoder.model_id == "RN50/openai"
    model.load_state_dict(state)
    model.eval()
    with torch.no_grad():
        want = torch.nn.functional.normalize(model.encode_text(encoder.tokenizer([QUERY])), dim=-1)
    np.testing.assert_allclose(encoder.embed_texts([QUERY]), want.numpy(), atol=1e-4)


@pytest.mark.parametrize("endpoint", ["http://hub.invalid:8080", "refused"])
def test_unreachable_mirror_fails_fast_with_advice(settings: HubSettings, endpoint: str) -> None:
    if endpoint == "refused":
        endpoint = f"http://127.0.0.1:{_refused_port()}"
    settings.endpoint(endpoint)
    start = time.monotonic()
    with pytest.raises(ModelNotAvailableError) as info:
        CLIPEncoder("hf-hub:acme/demo-clip", device="cpu")
    assert time.monotonic() - start < 2.0
    assert endpoint in str(info.value) and "local-dir:" in str(info.value)


def test_offline_openai_name_names_its_weights_and_url(settings: HubSettings) -> None:
    start = time.monotonic()
    with pytest.raises(ModelNotAvailableError) as info:
        resolve_model("ViT-L/14@336px", None)
    assert time.monotonic() - start < 2.0
    message = str(info.value)
    assert "ViT-L-14-336 / openai" in message
    assert "timm/vit_large_patch14_clip_336.openai" in message
    assert open_clip.get_pretrained_cfg("ViT-L-14-336", "openai")["url"] in message


def test_hf_hub_offline_forbids_every_source(
    settings: HubSettings, hub: Hub, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings.endpoint(hub.url)  # it would answer
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    start = time.monotonic()
    with pytest.raises(ModelNotAvailableError, match="HF_HUB_OFFLINE"):
        resolve_model("hf-hub:acme/demo-clip", None)
    with pytest.raises(ModelNotAvailableError, match="HF_HUB_OFFLINE"):
        resolve_model("RN50", None)
    assert time.monotonic() - start < 2.0 and hub.requests == []


def test_a_tag_falls_back_to_its_url_when_the_hub_is_unreachable(
    settings: HubSettings, tmp_path: Path, hub: Hub
) -> None:
    """OpenAI's weights have a download URL besides the hub repo: with the hub unreachable,
    they come from the URL, through urllib as open_clip downloads them."""
    arch, tag = "ViT-S-32-alt", "url_fallback_test"
    torch.manual_seed(0)
    weights = tmp_path / "served" / "vit-s-32-alt.pt"
    weights.parent.mkdir()
    torch.save(open_clip.create_model(arch).state_dict(), weights)
    hub.files["/clip/models/vit-s-32-alt.pt"] = weights
    cfg = {"hf_hub": "acme/vit-s-32-alt/", "url": f"{hub.url}/clip/models/vit-s-32-alt.pt"}
    open_clip.pretrained._PRETRAINED.setdefault(arch, {})[tag] = cfg
    try:
        resolved = resolve_model(arch, tag)
    finally:
        del open_clip.pretrained._PRETRAINED[arch][tag]
    assert resolved.pretrained == str(tmp_path / "home" / ".cache" / "clip" / weights.name)
    assert Path(str(resolved.pretrained)).read_bytes() == weights.read_bytes()
    assert hub.requests[-1] == "GET /clip/models/vit-s-32-alt.pt"


@pytest.mark.parametrize("name", list(OPENAI_NAMES))
def test_an_openai_name_means_openai_weights(settings: HubSettings, name: str) -> None:
    arch = OPENAI_NAMES[name]
    url = open_clip.get_pretrained_cfg(arch, "openai")["url"]
    assert ModelSpec(name).pretrained == "openai"  # with the default tag, as with none
    assert ModelSpec(name, "yfcc15m").pretrained == "yfcc15m"  # another tag is kept
    with pytest.raises(ModelNotAvailableError) as info:
        resolve_model(name, DEFAULT_PRETRAINED)
    assert f"{arch} / openai" in str(info.value) and url in str(info.value)


def test_the_chroma_function_and_the_cli_take_openai_names(
    settings: HubSettings, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    function = CLIPEmbeddingFunction(model_name="ViT-L/14@336px", device="cpu")
    assert function.get_config()["pretrained"] == "openai"
    rebuilt = CLIPEmbeddingFunction.build_from_config(function.get_config())
    with pytest.raises(ModelNotAvailableError, match="ViT-L-14-336 / openai"):
        rebuilt(["a cat"])
    image = tmp_path / "red.png"
    Image.new("RGB", (8, 8), "red").save(image)
    assert main(["classify", str(image), "--labels", "a,b", "--model", "RN50"]) == 1
    err = capsys.readouterr().err
    assert "RN50 / openai" in err and "openaipublic" in err


def test_a_transformers_hub_id_downloads_from_a_mirror(
    hub: Hub, settings: HubSettings, tmp_path: Path
) -> None:
    """`transformers:org/repo` downloads the checkpoint (snapshot_download: the revision, the
    tree, then each file) from the mirror, and loads the same towers as the folder itself."""
    from tests.family_builders import save_hf_clip

    folder = save_hf_clip(tmp_path / "tiny-clip")
    hub.serve_repo("acme/tiny-clip", folder, sorted(p.name for p in folder.iterdir()))
    settings.endpoint(hub.url)
    encoder = CLIPEncoder("transformers:acme/tiny-clip", device="cpu", precision="fp32")
    assert encoder.model_id == f"transformers:acme/tiny-clip@{COMMIT}"
    local = CLIPEncoder(f"transformers:{folder}", device="cpu", precision="fp32")
    assert np.array_equal(encoder.embed_texts([QUERY]), local.embed_texts([QUERY]))
    assert any(r.endswith("/model.safetensors") for r in hub.requests)


def test_a_cn_clip_name_downloads_its_checkpoint_from_a_mirror(
    hub: Hub, settings: HubSettings, cn_clip_checkpoint: Path
) -> None:
    """`cn-clip:RN50` with no file downloads cn_clip's named checkpoint (OFA-Sys/...) into
    ~/.cache/clip, where cn_clip's own load_from_name looks, then loads it from there."""
    from cn_clip.clip.utils import _MODELS

    repo, filename = _MODELS["RN50"]
    hub.serve_repo(f"OFA-Sys/{repo}", cn_clip_checkpoint.parent, [cn_clip_checkpoint.name])
    hub.files[f"/OFA-Sys/{repo}/resolve/main/{filename}"] = cn_clip_checkpoint
    settings.endpoint(hub.url)
    resolved = resolve_model("cn-clip:RN50", None)
    cached = Path(os.environ["HOME"]) / ".cache" / "clip" / filename
    assert (resolved.model_id, resolved.pretrained) == (f"cn-clip:RN50/{filename}", str(cached))
    assert cached.read_bytes() == cn_clip_checkpoint.read_bytes()
