"""`python -m benchmarks --suite cpu`: every CPU benchmark, one table, one JSON.

Each suite runs our path and its incumbent side by side in one process (see each module's
docstring for the exact baseline). The CPU suite uses modest sizes so that `make bench`
finishes in a few minutes (the folder suite's 100,000 files take longest; `--suite smoke`
runs it on 300); a suite that fails is reported and the others still run.

Writes `.bench/results.json` (machine, every figure with its raw timings, each suite's
duration or error) and `.bench/results.md` (the Markdown table the README shows).
"""

from __future__ import annotations

import argparse
import sys
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

from benchmarks._compare import Figure, markdown_table, write_json
from benchmarks._machine import machine_info, machine_line
from benchmarks.images import bench_dir

Runner = Callable[[bool, Any], list[Figure]]


@dataclass(frozen=True)
class Suite:
    name: str
    run: Runner  # (smoke, shared ViT-B-32 encoder) -> figures
    needs_encoder: bool = True


def _encoder_suite(smoke: bool, encoder: Any) -> list[Figure]:
    from benchmarks import encoder_bench

    sizes = (4, 8, 1) if smoke else (32, 64, 3)
    return encoder_bench.run(*sizes, encoder=encoder)


def _chroma_suite(smoke: bool, encoder: Any) -> list[Figure]:
    from benchmarks import chroma_bench

    if smoke:
        return chroma_bench.run(4, 8, 1, queries=4, n_vectors=50, encoder=encoder)
    return chroma_bench.run(32, 64, 3, queries=40, n_vectors=2_000, encoder=encoder)


def _langchain_suite(smoke: bool, encoder: Any) -> list[Figure]:
    from benchmarks import langchain_bench

    sizes = (4, 2, 1) if smoke else (32, 8, 3)
    figures: list[Figure] = langchain_bench.run(*sizes, encoder=encoder)
    return figures


def _llamaindex_suite(smoke: bool, encoder: Any) -> list[Figure]:
    from benchmarks import llamaindex_bench

    sizes = (4, 4, 1) if smoke else (32, 64, 3)
    figures: list[Figure] = llamaindex_bench.run(*sizes, encoder=encoder)
    return figures


def _index_suite(smoke: bool, encoder: Any) -> list[Figure]:
    from benchmarks import index_bench

    figures: list[Figure] = index_bench.main(["--smoke"] if smoke else [])
    return figures


def _folder_suite(smoke: bool, encoder: Any) -> list[Figure]:
    from benchmarks import folder_bench

    figures: list[Figure] = folder_bench.main(["--quick"] if smoke else [])
    return figures


def _server_suite(smoke: bool, encoder: Any) -> list[Figure]:
    from benchmarks import server_bench

    results = server_bench.main(["--smoke"] if smoke else ["--rounds", "1"])
    figures: list[Figure] = server_bench.figures(results)
    return figures


SUITES = {
    s.name: s
    for s in [
        Suite("encoder", _encoder_suite),
        Suite("chroma", _chroma_suite),
        Suite("langchain", _langchain_suite),
        Suite("llamaindex", _llamaindex_suite),
        Suite("index", _index_suite, needs_encoder=False),
        Suite("folder", _folder_suite, needs_encoder=False),
        Suite("server", _server_suite, needs_encoder=False),
    ]
}


def run_suites(names: list[str], smoke: bool) -> dict[str, Any]:
    """Run the named suites on one shared ViT-B-32 (random weights); never raises."""
    from benchmarks.encoder_bench import random_vit_b32

    encoder = random_vit_b32() if any(SUITES[n].needs_encoder for n in names) else None
    figures: list[Figure] = []
    suites: dict[str, dict[str, Any]] = {}
    for name in names:
        start = time.perf_counter()
        print(f"== {name} ==", file=sys.stderr, flush=True)
        try:
            got = SUITES[name].run(smoke, encoder)
            figures += got
            suites[name] = {"figures": len(got)}
        except Exception as exc:  # one broken suite must not hide the others' figures
            traceback.print_exc()
            suites[name] = {"error": f"{type(exc).__name__}: {exc}"}
        suites[name]["seconds"] = round(time.perf_counter() - start, 1)
    return {"figures": figures, "suites": suites}


def render(result: dict[str, Any], info: dict[str, Any], command: str) -> str:
    """The Markdown the README shows: machine, date, command, table, failed suites."""
    when = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    lines = [
        f"Machine: {machine_line(info)}. Run {when}: `{command}`.",
        "",
        markdown_table(result["figures"]),
    ]
    steadier = [
        f"- {f.benchmark} vs {f.baseline_name}: {f.details['cpu_speedup']:.2f}×"
        for f in result["figures"]
        if f.details.get("cpu_speedup")
    ]
    if steadier:
        lines += [
            "",
            "Work saved (baseline's process CPU time / ours; steadier on a shared machine):",
        ]
        lines += steadier
    failed = {k: v["error"] for k, v in result["suites"].items() if "error" in v}
    if failed:
        lines += ["", "Suites that failed:"] + [f"- {k}: {v}" for k, v in failed.items()]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__)
    parser.add_argument("--suite", choices=["cpu", "smoke"], default="cpu")
    parser.add_argument("--only", nargs="+", choices=list(SUITES), help="these suites only")
    args = parser.parse_args(argv)
    names = args.only or list(SUITES)
    info = machine_info()
    result = run_suites(names, smoke=args.suite == "smoke")
    command = "python -m benchmarks " + " ".join(argv if argv is not None else sys.argv[1:])
    markdown = render(result, info, command.strip())
    print("\n" + markdown)
    out = bench_dir()
    stem = "results" if args.suite == "cpu" else "results-smoke"
    (out / f"{stem}.md").write_text(markdown)
    write_json(
        out / f"{stem}.json",
        {
            "machine": info,
            "suites": result["suites"],
            "figures": [f.as_dict() for f in result["figures"]],
        },
    )
    print(f"wrote {out / stem}.md and .json", file=sys.stderr)
    return 1 if any("error" in s for s in result["suites"].values()) else 0


if __name__ == "__main__":
    sys.exit(main())
