"""Fixtures shared by every test layer (core, LangChain, LlamaIndex).

- `demo_encoder`: the real demo CLIP model this project trains, loaded once per session.
- `fake_encoder`: the deterministic double, for isolating units only.
- `chroma_server`: a real `chroma run` on loopback, started once per session and stopped at the
  end (or the server named by CLIP_MM_CHROMA_HOST / CLIP_MM_CHROMA_PORT).
- `chroma_client_kind`: parametrizes a test over "embedded" and "http" clients.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _chroma_executable() -> str:
    beside = Path(sys.executable).with_name("chroma")
    found = str(beside) if beside.exists() else shutil.which("chroma")
    if not found:
        raise RuntimeError("the 'chroma' command is not installed; run `make install`")
    return found


def _wait_for_heartbeat(url: str, proc: subprocess.Popen[bytes], timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"chroma server exited early with code {proc.returncode}")
        try:
            with urllib.request.urlopen(url, timeout=1) as resp:
                if resp.status == 200:
                    return
        except OSError:
            time.sleep(0.2)
    raise RuntimeError(f"chroma server did not answer at {url} within {timeout}s")


@pytest.fixture(scope="session")
def chroma_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, int]]:
    """A real Chroma server over HTTP on loopback."""
    host, port = os.environ.get("CLIP_MM_CHROMA_HOST"), os.environ.get("CLIP_MM_CHROMA_PORT")
    if host and port:
        yield host, int(port)
        return
    port_n = _free_port()
    path = tmp_path_factory.mktemp("chroma-server")
    log = open(path / "server.log", "wb")  # noqa: SIM115 - closed below
    cmd = [_chroma_executable(), "run", "--path", str(path / "db"), "--host", "127.0.0.1"]
    proc = subprocess.Popen([*cmd, "--port", str(port_n)], stdout=log, stderr=subprocess.STDOUT)
    try:
        _wait_for_heartbeat(f"http://127.0.0.1:{port_n}/api/v2/heartbeat", proc)
        yield "127.0.0.1", port_n
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()


@pytest.fixture(params=["embedded", "http"])
def chroma_client_kind(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def chroma_client(chroma_client_kind: str, tmp_path: Path, request: pytest.FixtureRequest) -> Any:
    """A fresh Chroma client of each kind: embedded (PersistentClient) and a real HTTP server."""
    import chromadb

    if chroma_client_kind == "embedded":
        return chromadb.PersistentClient(path=str(tmp_path / "chroma"))
    host, port = request.getfixturevalue("chroma_server")
    return chromadb.HttpClient(host=host, port=port)


@pytest.fixture(scope="session")
def demo_encoder() -> Any:
    """The bundled demo model (a real CLIP trained by this project), on the CPU."""
    from clip_multimodal import CLIPEncoder
    from clip_multimodal.models import DEMO_MODEL

    return CLIPEncoder(DEMO_MODEL, device="cpu")


@pytest.fixture
def fake_encoder() -> Any:
    from clip_multimodal.testing import FakeEncoder

    return FakeEncoder()


@pytest.fixture(scope="session")
def demo_images_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder of held-out demo images (shapes and digits) with known captions."""
    from clip_multimodal.datasets import write_demo_images

    out = tmp_path_factory.mktemp("demo-images")
    write_demo_images(out)
    return out


@pytest.fixture(scope="session")
def cn_clip_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A random-weight Chinese-CLIP checkpoint (cn_clip's RN50, its smallest) in cn_clip's format."""
    from tests.family_builders import save_cn_clip_checkpoint

    return save_cn_clip_checkpoint(tmp_path_factory.mktemp("cn-clip") / "clip_cn_rn50.pt")


@pytest.fixture(scope="session")
def cn_clip_encoder(cn_clip_checkpoint: Path) -> Any:
    """`cn-clip:RN50` on the random checkpoint, on the CPU."""
    from clip_multimodal import CLIPEncoder

    return CLIPEncoder("cn-clip:RN50", str(cn_clip_checkpoint), device="cpu")
