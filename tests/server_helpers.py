"""Helpers for tests that need the service on a real socket (uvicorn in a thread)."""

from __future__ import annotations

import http.server
import io
import os
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from PIL import Image


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def running_server(app: Any, host: str = "127.0.0.1") -> Iterator[str]:
    """Serve `app` as `clip-multimodal serve` does, on a free loopback port; yield its URL."""
    import uvicorn

    from clip_multimodal.server.serve import uvicorn_config

    port = free_port()
    settings = app.state.service.settings
    config = uvicorn_config(app, settings, host=host, port=port, log_level="warning")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, name="uvicorn-test", daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("uvicorn did not start")
        time.sleep(0.02)
    try:
        yield f"http://{host}:{port}"
    finally:
        server.should_exit = True
        thread.join(15)


def raw_get(base_url: str, raw_path: str) -> tuple[int, bytes]:
    """GET a path exactly as written (no client-side `..` normalization); (status, body)."""
    host, port = base_url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        request = f"GET {raw_path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n"
        sock.sendall(request.encode("latin-1"))
        chunks = []
        while chunk := sock.recv(65536):
            chunks.append(chunk)
    head, _, body = b"".join(chunks).partition(b"\r\n\r\n")
    return int(head.split()[1]), body


def png_bytes(color: tuple[int, int, int], size: tuple[int, int] = (20, 20)) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", size, color).save(buf, format="PNG")
    return buf.getvalue()


@contextmanager
def without_proxies() -> Iterator[None]:
    """Loopback test servers are reached directly: the environment's proxy variables are set
    aside for the block and restored after it (a module fixture cannot use `monkeypatch`)."""
    with pytest.MonkeyPatch.context() as patch:
        for key in list(os.environ):
            if key.lower().endswith("_proxy"):
                patch.delenv(key)
        yield


class ImageHandler(http.server.BaseHTTPRequestHandler):
    """A quiet handler for loopback image servers in tests: `send_body` answers 200."""

    def send_body(self, body: bytes, content_type: str = "image/png") -> None:
        self.send_response(200)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass
