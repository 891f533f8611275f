"""The service under concurrent load: micro-batching against one request per forward pass.

Two real uvicorn servers run the same app on loopback, side by side: one batches concurrent
requests (`max_batch=32`, 5 ms window), the other runs every request alone (`max_batch=1`).
An httpx client drives each at 1, 8 and 32 concurrent clients with a bounded number of
requests, alternating which server goes first, and reports requests/s and p50/p99 latency.

Workloads: `text` posts one caption to /v1/embed/text; `image` uploads one 640x480 JPEG
to /v1/embed/image. The client shares the machine with the servers, as a sidecar would.

Run: `python -m benchmarks.server_bench [--smoke] [--model demo|ViT-B-32] [--device cpu]`.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx

from benchmarks._common import encoder_for, machine_header, write_figures
from benchmarks._compare import Figure, percentile
from benchmarks.images import caption_texts, make_jpegs

__all__ = ["Result", "main"]

LEVELS = (1, 8, 32)
MODES = {"batched": 32, "one per pass": 1}
Request = Callable[[httpx.AsyncClient, int], Awaitable[httpx.Response]]


@dataclass
class Result:
    """One (workload, clients, mode) cell: throughput and latency over every request."""

    workload: str
    clients: int
    mode: str
    requests: int
    seconds: float
    latencies: list[float]

    @property
    def rps(self) -> float:
        return self.requests / self.seconds

    def p(self, q: float) -> float:
        return percentile(self.latencies, q) * 1000


# -- the servers ------------------------------------------------------------------------------


def _serve(port: int, max_batch: int, model: str, device: str, data_dir: str) -> None:
    """Run one server in this process (the benchmark starts two of these as subprocesses)."""
    import uvicorn

    from clip_multimodal.server import ServerSettings, create_app

    encoder = encoder_for(model, device)
    settings = ServerSettings(
        data_dir=Path(data_dir), max_batch=max_batch, batch_wait_ms=5.0, request_timeout_s=300
    )
    uvicorn.run(
        create_app(settings, encoder=encoder), host="127.0.0.1", port=port, log_level="warning"
    )


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _wait_up(url: str, proc: subprocess.Popen[bytes], timeout: float = 180) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"the server exited with {proc.returncode}")
        try:
            if httpx.get(url, timeout=2).status_code == 200:
                return
        except httpx.TransportError:
            time.sleep(0.3)
    raise RuntimeError(f"no server at {url}")


@contextmanager
def servers(model: str, device: str) -> Iterator[dict[str, str]]:
    """One server per mode; yields {mode: base_url}."""
    procs: list[subprocess.Popen[bytes]] = []
    with tempfile.TemporaryDirectory(prefix="server-bench-") as tmp:
        try:
            urls = {}
            for mode, max_batch in MODES.items():
                port = _free_port()
                cmd = [sys.executable, "-m", "benchmarks.server_bench", "--serve", str(port)]
                cmd += ["--max-batch", str(max_batch), "--model", model, "--device", device]
                cmd += ["--data-dir", tmp]
                procs.append(subprocess.Popen(cmd))
                urls[mode] = f"http://127.0.0.1:{port}"
            for url, proc in zip(urls.values(), procs, strict=True):
                _wait_up(f"{url}/healthz", proc)
            yield urls
        finally:
            for proc in procs:
                proc.terminate()
            for proc in procs:
                proc.wait(30)


# -- the load ---------------------------------------------------------------------------------


def workloads(n: int) -> dict[str, Request]:
    texts = caption_texts(n)
    images = [p.read_bytes() for p in make_jpegs(min(n, 64))]

    def text(client: httpx.AsyncClient, i: int) -> Awaitable[httpx.Response]:
        return client.post("/v1/embed/text", json={"texts": [texts[i % len(texts)]]})

    def image(client: httpx.AsyncClient, i: int) -> Awaitable[httpx.Response]:
        files = {"files": (f"{i}.jpg", images[i % len(images)], "image/jpeg")}
        return client.post("/v1/embed/image", files=files)

    return {"text": text, "image": image}


async def drive(url: str, request: Request, n: int, clients: int) -> tuple[float, list[float]]:
    """Send `n` requests from `clients` concurrent clients; (wall seconds, latencies)."""
    latencies: list[float] = []
    counter = iter(range(n))
    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)

    async def client_loop(client: httpx.AsyncClient) -> None:
        for i in counter:
            start = time.perf_counter()
            response = await request(client, i)
            latencies.append(time.perf_counter() - start)
            if response.status_code != 200:
                raise RuntimeError(f"HTTP {response.status_code}: {response.text[:200]}")

    async with httpx.AsyncClient(base_url=url, limits=limits, timeout=300) as client:
        start = time.perf_counter()
        await asyncio.gather(*(client_loop(client) for _ in range(clients)))
        return time.perf_counter() - start, latencies


def measure(
    urls: dict[str, str], name: str, request: Request, clients: int, n: int, rounds: int
) -> list[Result]:
    """Alternate the modes `rounds` times (rotating the start); pool each mode's requests."""
    modes = list(urls)
    totals: dict[str, tuple[float, list[float]]] = {mode: (0.0, []) for mode in modes}
    for mode in modes:  # warm-up: connections, caches, the first forward pass
        asyncio.run(drive(urls[mode], request, min(n, 2 * clients), clients))
    for r in range(rounds):
        for mode in modes[r % 2 :] + modes[: r % 2]:
            seconds, lat = asyncio.run(drive(urls[mode], request, n, clients))
            total, all_lat = totals[mode]
            totals[mode] = (total + seconds, all_lat + lat)
    return [
        Result(name, clients, mode, n * rounds, seconds, lat)
        for mode, (seconds, lat) in totals.items()
    ]


# -- the report -------------------------------------------------------------------------------


def table(results: list[Result]) -> str:
    """One row per workload and client count, batched and one-per-pass side by side."""
    lines = [
        "| workload | clients | batched req/s | p50 ms | p99 ms | one-per-pass req/s | p50 ms | p99 ms | req/s gain |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    cells = {(r.workload, r.clients, r.mode): r for r in results}
    for workload, clients in dict.fromkeys((r.workload, r.clients) for r in results):
        b, u = cells[workload, clients, "batched"], cells[workload, clients, "one per pass"]
        lines.append(
            f"| {workload} | {clients} | {b.rps:.1f} | {b.p(50):.1f} | {b.p(99):.1f} | "
            f"{u.rps:.1f} | {u.p(50):.1f} | {u.p(99):.1f} | {b.rps / u.rps:.2f}× |"
        )
    return "\n".join(lines)


def figures(results: list[Result]) -> list[Figure]:
    cells = {(r.workload, r.clients, r.mode): r for r in results}
    out = []
    for (workload, clients, mode), r in cells.items():
        if mode != "batched":
            continue
        u = cells[workload, clients, "one per pass"]
        out.append(
            Figure(
                f"server {workload}, {clients} clients",
                r.rps,
                "req/s",
                baseline=u.rps,
                baseline_name="one request per forward pass",
                details={
                    "p50_ms": r.p(50),
                    "p99_ms": r.p(99),
                    "baseline_p50_ms": u.p(50),
                    "baseline_p99_ms": u.p(99),
                    "requests": r.requests,
                },
            )
        )
    return out


def main(argv: list[str] | None = None) -> list[Result]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--smoke", action="store_true", help="few requests, to check it runs")
    parser.add_argument(
        "--model", default="demo", help="'demo' or an architecture (random weights)"
    )
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--workload", choices=["text", "image"], action="append")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--serve", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--max-batch", type=int, default=32, help=argparse.SUPPRESS)
    parser.add_argument("--data-dir", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.serve:
        _serve(args.serve, args.max_batch, args.model, args.device, args.data_dir)
        return []
    per_client = 4 if args.smoke else 24  # requests per client per round, bounded
    rounds = 1 if args.smoke else args.rounds
    info = machine_header(f"; model {args.model} on {args.device}")
    loads = workloads(32 * per_client)
    results: list[Result] = []
    with servers(args.model, args.device) as urls:
        for name in args.workload or list(loads):
            for clients in LEVELS:
                n = max(per_client * clients, 4 if args.smoke else 64)
                results += measure(urls, name, loads[name], clients, n, rounds)
                print(f"  {name} x{clients}: done", file=sys.stderr)
    print(table(results))
    out = write_figures(
        "server-smoke.json" if args.smoke else "server.json",
        info,
        figures(results),
        model=args.model,
        device=args.device,
    )
    print(f"\nwrote {out}")
    return results


if __name__ == "__main__":
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    main()
