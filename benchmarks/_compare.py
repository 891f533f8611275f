"""Side-by-side timing: our path and a baseline, alternately, in one process.

Alternating (and rotating which goes first) spreads machine noise, thermal drift and cache
effects over both paths, so the ratio of medians is fair even on a shared machine.
"""

from __future__ import annotations

import json
import statistics
import time
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

__all__ = [
    "Figure",
    "Timings",
    "alternate",
    "cpu_speedup",
    "markdown_table",
    "percentile",
    "rate",
    "timed",
    "write_json",
]


def alternate(
    runs: Mapping[str, Callable[[], object]],
    repeats: int,
    warmup: bool = True,
    cpu: dict[str, list[float]] | None = None,
) -> dict[str, list[float]]:
    """Run each callable `repeats` times, round-robin with a rotating start; seconds per run.

    If `cpu` is given, it receives each run's process CPU time (all threads) per name: on a
    shared machine that is the steadier measure of the work done.
    """
    names = list(runs)
    if warmup:
        for name in names:
            runs[name]()
    seconds: dict[str, list[float]] = {name: [] for name in names}
    for r in range(repeats):
        for name in names[r % len(names) :] + names[: r % len(names)]:
            start, start_cpu = time.perf_counter(), time.process_time()
            runs[name]()
            seconds[name].append(time.perf_counter() - start)
            if cpu is not None:
                cpu.setdefault(name, []).append(time.process_time() - start_cpu)
    return seconds


def percentile(values: list[float], q: float) -> float:
    """The q-th percentile (0-100), linearly interpolated."""
    ordered = sorted(values)
    if not ordered:
        raise ValueError("percentile of no values")
    pos = (len(ordered) - 1) * q / 100.0
    lo = int(pos)
    hi = min(lo + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (pos - lo)


@dataclass
class Figure:
    """One row of the results table.

    `ratio` is ours / baseline in the row's unit: a speed-up for rates, a slowdown factor for
    latencies. `met` is None where the row has no goal.
    """

    benchmark: str
    ours: float
    unit: str
    baseline: float | None = None
    baseline_name: str = ""
    goal: str = ""
    met: bool | None = None
    details: dict[str, Any] = field(default_factory=dict)

    @property
    def ratio(self) -> float | None:
        if self.baseline is None or self.baseline == 0:
            return None
        return self.ours / self.baseline

    def as_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["ratio"] = self.ratio
        return out


def rate(items: int, seconds: list[float]) -> float:
    """Items per second at the median run."""
    return items / statistics.median(seconds)


def cpu_speedup(cpu: Mapping[str, list[float]], ours: str, baseline: str) -> float | None:
    """Median process CPU seconds of the baseline over ours: the work saved, load-proof."""
    if not cpu.get(ours) or not cpu.get(baseline):
        return None
    return statistics.median(cpu[baseline]) / max(statistics.median(cpu[ours]), 1e-9)


@dataclass
class Timings:
    """Wall and process CPU seconds per run name, from `timed`."""

    seconds: dict[str, list[float]]
    cpu: dict[str, list[float]]

    def rate(self, name: str, items: int) -> float:
        """Items per second at `name`'s median run."""
        return rate(items, self.seconds[name])

    def details(self, ours: str, baseline: str) -> dict[str, Any]:
        """The raw timings and the CPU-time speed-up of `ours` over `baseline`, for a Figure."""
        return {
            "seconds": self.seconds,
            "cpu_seconds": self.cpu,
            "cpu_speedup": cpu_speedup(self.cpu, ours, baseline),
        }


def timed(runs: Mapping[str, Callable[[], object]], repeats: int) -> Timings:
    """`alternate` (with its warm-up), recording each run's process CPU time too."""
    cpu: dict[str, list[float]] = {}
    seconds = alternate(runs, repeats, cpu=cpu)
    return Timings(seconds, cpu)


def write_json(path: Path, payload: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(payload, indent=2, default=str) + "\n")


def _fmt(value: float | None, unit: str = "") -> str:
    if value is None:
        return "—"
    text = f"{value:,.0f}" if abs(value) >= 100 else f"{value:.3g}"
    return f"{text} {unit}".strip()


def markdown_table(figures: list[Figure]) -> str:
    """The results as one Markdown table: benchmark, ours, baseline, ratio, goal, met?"""
    lines = [
        "| benchmark | ours | baseline | ratio | goal | met? |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for f in figures:
        base = _fmt(f.baseline, f.unit) + (f" ({f.baseline_name})" if f.baseline_name else "")
        ratio = "—" if f.ratio is None else f"{f.ratio:.2f}×"
        met = {None: "", True: "yes", False: "**no**"}[f.met]
        lines.append(
            f"| {f.benchmark} | {_fmt(f.ours, f.unit)} | {base} | {ratio} | {f.goal} | {met} |"
        )
    return "\n".join(lines)
