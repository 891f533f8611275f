"""Shared parts of the Ray tests: tiny generated images, collection snapshots, a worker that
dies once, and a real two-node Ray cluster started with `ray start`."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]


def write_images(folder: Path, n: int, seed: int = 0) -> list[Path]:
    """n distinct 8x8 PNGs (random pixels), in two subfolders."""
    rng = np.random.default_rng(seed)
    paths = []
    for i in range(n):
        path = folder / f"part{i % 2}" / f"img{i:05d}.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(rng.integers(0, 256, (8, 8, 3), dtype=np.uint8)).save(path)
        paths.append(path)
    return paths


def snapshot(host: str, port: int, collection: str) -> dict[str, tuple[np.ndarray, dict[str, Any]]]:
    """id -> (vector, metadata without the run id) of every record in a server collection."""
    import chromadb

    got = (
        chromadb.HttpClient(host=host, port=port)
        .get_collection(collection)
        .get(include=["embeddings", "metadatas"])
    )
    return {
        id_: (np.asarray(vec), {k: v for k, v in meta.items() if k != "index_run"})
        for id_, vec, meta in zip(got["ids"], got["embeddings"], got["metadatas"], strict=True)
    }


def assert_same_collection(a: dict[str, Any], b: dict[str, Any]) -> None:
    assert a.keys() == b.keys()
    for id_, (vector, meta) in a.items():
        other_vector, other_meta = b[id_]
        assert np.abs(vector - other_vector).max() < 1e-5, id_
        assert meta == other_meta, id_


class ExitOnce:
    """An encoder factory whose encoder kills its worker process once, after `after` batches.

    The marker file is created just before the exit, so the actor Ray starts in its place
    (and every later one) embeds normally.
    """

    def __init__(self, marker: Path, after: int) -> None:
        self.marker = str(marker)
        self.after = after

    def __call__(self) -> Any:
        from clip_multimodal import CLIPEncoder
        from clip_multimodal.models import DEMO_MODEL

        return _Exiting(CLIPEncoder(DEMO_MODEL, device="cpu"), self.marker, self.after)


class _Exiting:
    def __init__(self, inner: Any, marker: str, after: int) -> None:
        self.inner, self.marker, self.after, self.calls = inner, marker, after, 0
        self.model_id, self.dim = inner.model_id, inner.dim

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    def try_embed_images(self, images: Any) -> Any:
        self.calls += 1
        if self.calls > self.after and not os.path.exists(self.marker):
            Path(self.marker).touch()
            os._exit(1)  # the worker process dies mid-job, before this batch is written
        return self.inner.try_embed_images(images)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def worker_env() -> dict[str, str]:
    """The environment Ray's workers start with: this checkout first on the path."""
    paths = [str(ROOT), os.environ.get("PYTHONPATH", "")]
    return {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in paths if p)}


def cluster_env() -> dict[str, str]:
    """`worker_env` for the two-node cluster and its drivers: a loopback test cluster runs
    without Ray's token authentication (which would share a token file in ~/.ray)."""
    return {**worker_env(), "RAY_AUTH_MODE": "disabled"}


@contextmanager
def two_node_cluster(cpus_per_node: int = 2) -> Iterator[str]:
    """A head (`ray start --head`) and a second node joined to it (`ray start --address`),
    in their own temp dir and ports, each started with --block so that stopping exactly
    these two commands stops their nodes (never another process's cluster)."""
    ray = str(Path(sys.executable).with_name("ray"))
    temp = tempfile.mkdtemp(prefix=f"rt{uuid.uuid4().hex[:6]}", dir="/tmp")  # short: sockets
    address = f"127.0.0.1:{free_port()}"
    common = [f"--num-cpus={cpus_per_node}", "--num-gpus=0", "--object-store-memory=200000000"]
    common += ["--block", "--disable-usage-stats"]
    head = [ray, "start", "--head", f"--port={address.split(':')[1]}", f"--temp-dir={temp}"]
    head += ["--include-dashboard=false", f"--ray-client-server-port={free_port()}"]
    head += [f"--dashboard-port={free_port()}"]
    head += ["--node-ip-address=127.0.0.1"]
    procs = [_start([*head, *common, f"--dashboard-agent-listen-port={free_port()}"])]
    try:
        _wait_for_port(address)
        join = [ray, "start", f"--address={address}", "--node-ip-address=127.0.0.1", *common]
        procs.append(_start([*join, f"--dashboard-agent-listen-port={free_port()}"]))
        _wait_for_nodes(address, 2)
        yield address
    finally:
        for proc in reversed(procs):
            proc.terminate()  # `ray start --block` stops the node's processes on SIGTERM
            try:
                proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                proc.kill()


def _start(cmd: list[str]) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        cmd, env=cluster_env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )


def _wait_for_port(address: str, timeout: float = 120.0) -> None:
    host, port = address.split(":")
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            socket.create_connection((host, int(port)), timeout=1).close()
            return
        except OSError:
            time.sleep(0.5)
    raise RuntimeError(f"the Ray head at {address} did not listen within {timeout:.0f}s")


def _wait_for_nodes(address: str, n: int, timeout: float = 120.0) -> None:
    script = (
        "import ray, sys; ray.init(address=sys.argv[1], log_to_driver=False); "
        "print(sum(1 for node in ray.nodes() if node['Alive']))"
    )
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        done = subprocess.run(
            [sys.executable, "-c", script, address],
            capture_output=True,
            text=True,
            timeout=120,
            env=cluster_env(),
        )
        if done.returncode == 0 and done.stdout.strip().splitlines()[-1:] == [str(n)]:
            return
        time.sleep(2)
    raise RuntimeError(f"the Ray cluster at {address} did not reach {n} nodes in {timeout:.0f}s")
