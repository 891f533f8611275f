"""Several writers on one store: real processes on one embedded folder and on one real Chroma
server; the write lock; a server that never answers."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from clip_multimodal.errors import IndexLockedError, IndexUnavailableError
from clip_multimodal.index import ImageIndex, check_collection
from clip_multimodal.testing import FakeEncoder

N_FILES = 200
ROOT = Path(__file__).resolve().parent.parent

_CHILD = """
import json, sys, time
from clip_multimodal.index import ImageIndex
from clip_multimodal.testing import FakeEncoder

class SlowEncoder(FakeEncoder):  # slow enough that the two runs overlap
    def try_embed_images(self, images):
        time.sleep(float(sys.argv[5]))
        return super().try_embed_images(images)

kind, target, name, folder = sys.argv[1:5]
if kind == "embedded":
    where = {"path": target}
else:
    host, port = target.rsplit(":", 1)
    where = {"host": host, "port": int(port)}
index = ImageIndex(SlowEncoder(), name, chunk_size=16, lock_timeout=120, **where)
print("started", flush=True)
r = index.index_folder(folder, progress=False)
print(json.dumps({"added": r.added, "updated": r.updated, "unchanged": r.unchanged,
                  "failed": len(r.failed)}), flush=True)
"""


def _images(folder: Path, n: int = N_FILES) -> Path:
    folder.mkdir()
    rng = np.random.default_rng(0)
    for i in range(n):
        Image.fromarray(rng.integers(0, 256, (12, 12, 3), dtype=np.uint8)).save(
            folder / f"{i:03d}.png"
        )
    return folder


def _start(kind: str, target: str, name: str, folder: Path, delay: float = 0.02) -> Any:
    args = [sys.executable, "-c", _CHILD, kind, target, name, str(folder), str(delay)]
    return subprocess.Popen(
        args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=ROOT, text=True
    )


def _finish(proc: Any) -> dict[str, int]:
    out, err = proc.communicate(timeout=180)
    assert proc.returncode == 0, err[-2000:]
    return dict(json.loads(out.strip().splitlines()[-1]))


def _check_complete(index: ImageIndex, folder: Path) -> None:
    got = index.collection.get(include=["metadatas"])
    uris = [m["uri"] for m in got["metadatas"]]
    assert len(uris) == len(set(uris)) == N_FILES  # complete, no duplicates
    assert set(uris) == {str(p) for p in folder.iterdir()}


def _two_writers(kind: str, target: str, folder: Path) -> tuple[str, list[dict[str, int]]]:
    name = f"race-{uuid.uuid4().hex[:10]}"
    procs = [_start(kind, target, name, folder) for _ in range(2)]
    return name, [_finish(p) for p in procs]


@pytest.mark.parametrize("run", range(2))
def test_two_processes_index_one_embedded_folder(tmp_path: Path, run: int) -> None:
    folder, store = _images(tmp_path / "imgs"), tmp_path / "db"  # a new store: both create it

    name, reports = _two_writers("embedded", str(store), folder)

    assert [r["failed"] for r in reports] == [0, 0]
    assert sum(r["added"] for r in reports) == N_FILES  # each record counted by its writer
    assert all(r["added"] + r["unchanged"] == N_FILES for r in reports)
    index = ImageIndex(FakeEncoder(), name, store)
    _check_complete(index, folder)
    assert check_collection(name, store).ok


def test_two_processes_index_one_folder_on_a_chroma_server(
    tmp_path: Path, chroma_server: tuple[str, int]
) -> None:
    host, port = chroma_server
    folder = _images(tmp_path / "imgs")

    name, reports = _two_writers("http", f"{host}:{port}", folder)

    assert [r["failed"] for r in reports] == [0, 0]
    assert sum(r["added"] for r in reports) == N_FILES
    assert all(r["added"] + r["unchanged"] == N_FILES for r in reports)
    _check_complete(ImageIndex(FakeEncoder(), name, host=host, port=port), folder)


def test_a_second_writer_fails_fast_naming_the_holder_and_readers_go_on(tmp_path: Path) -> None:
    folder, store = _images(tmp_path / "imgs"), tmp_path / "db"
    name = f"lock-{uuid.uuid4().hex[:10]}"
    writer = _start("embedded", str(store), name, folder, delay=0.5)  # about 7 s of writing
    try:
        assert writer.stdout.readline().strip() == "started"
        time.sleep(1.0)  # it holds the lock now
        index = ImageIndex(FakeEncoder(), name, store)

        start = time.perf_counter()
        with pytest.raises(IndexLockedError) as locked:
            index.add([folder / "000.png"])
        elapsed = time.perf_counter() - start
        hits = index.search_by_vector(np.ones(32), k=3)  # reading takes no lock
    finally:
        report = _finish(writer)

    assert elapsed < 1.0
    assert str(store) in str(locked.value) and f"pid {writer.pid}" in str(locked.value)
    assert len(hits) <= 3 and report["added"] == N_FILES


def test_the_same_process_shares_its_lock_between_indexes(tmp_path: Path) -> None:
    folder, store = _images(tmp_path / "imgs", 10), tmp_path / "db"
    first = ImageIndex(FakeEncoder(), "first", store)
    second = ImageIndex(FakeEncoder(), "second", store)
    done: list[int] = []

    def callback(n: int, total: int) -> None:
        if not done:
            done.append(second.add([folder / "001.png"]).added)  # inside first's write

    first.index_folder(folder, progress=False, callback=callback)

    assert done == [1] and first.count() == 10


@pytest.fixture
def silent_server() -> Iterator[tuple[str, int]]:
    """A TCP server that accepts connections and never answers."""
    server = socket.create_server(("127.0.0.1", 0))
    accepted: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        server.settimeout(0.1)
        while not stop.is_set():
            try:
                accepted.append(server.accept()[0])
            except TimeoutError:
                continue

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    yield "127.0.0.1", int(server.getsockname()[1])
    stop.set()
    thread.join()
    for conn in accepted:
        conn.close()
    server.close()


def test_a_server_that_never_answers_times_out_with_a_clear_error(
    silent_server: tuple[str, int],
) -> None:
    host, port = silent_server
    start = time.perf_counter()
    with pytest.raises(IndexUnavailableError) as unavailable:
        ImageIndex(FakeEncoder(), "images", host=host, port=port, timeout=1.0)
    elapsed = time.perf_counter() - start

    assert elapsed < 5.0
    assert f"{host}:{port}" in str(unavailable.value) and "1 s" in str(unavailable.value)


class _StallingProxy:
    """Forwards TCP to a real server until `stall()`; then new requests get no answer."""

    def __init__(self, target: tuple[str, int]) -> None:
        self.target = target
        self.stalled = threading.Event()
        self.server = socket.create_server(("127.0.0.1", 0))
        self.port = int(self.server.getsockname()[1])
        threading.Thread(target=self._accept, daemon=True).start()

    def stall(self) -> None:
        self.stalled.set()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.server.accept()
            except OSError:
                return
            upstream = socket.create_connection(self.target)
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pipe, args=(a, b), daemon=True).start()

    def _pipe(self, src: socket.socket, dst: socket.socket) -> None:
        try:
            while data := src.recv(65536):
                if self.stalled.is_set():
                    return  # swallow it: the request waits forever
                dst.sendall(data)
        except OSError:
            return

    def close(self) -> None:
        self.server.close()


def test_a_server_that_stops_answering_mid_session_times_out(
    chroma_server: tuple[str, int],
) -> None:
    proxy = _StallingProxy(chroma_server)
    try:
        index = ImageIndex(
            FakeEncoder(),
            f"t-{uuid.uuid4().hex[:8]}",
            host="127.0.0.1",
            port=proxy.port,
            timeout=1.5,
        )
        proxy.stall()
        start = time.perf_counter()
        with pytest.raises(IndexUnavailableError) as unavailable:
            index.count()
        elapsed = time.perf_counter() - start
    finally:
        proxy.close()

    assert 1.0 < elapsed < 6.0
    assert f"127.0.0.1:{proxy.port}" in str(unavailable.value)
    assert "1.5 s" in str(unavailable.value)
