"""benchmarks/gpu.py's logic on the CPU: the fidelity gate, and sub-measurements that fail
alone (issue 19, items 6 and 9). The whole script's smoke run is in test_benchmarks.py."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from benchmarks import gpu
from benchmarks.images import make_jpegs
from clip_multimodal import CLIPEncoder
from tests import model_builders as mb

GATE = f"embeddings vs CPU path cosine min >= {gpu.GATE_COSINE}"


def _out(cosine: float | None) -> dict[str, Any]:
    fidelity = {} if cosine is None else {"cosine_min_vs_cpu_decode": cosine}
    out: dict[str, Any] = {
        "model_only": {},
        "naive": {},
        "pipeline": {"fidelity": fidelity},
        "chroma": {},
    }
    out["goals"] = gpu.goals(out)
    out["gates"] = gpu.gates(out)
    return out


@pytest.mark.parametrize(
    ("cosine", "passed", "status"),
    [(0.99995, True, 0), (0.9999, True, 0), (0.9998, False, 1), (None, None, 1)],
)
def test_the_gate_is_embedding_cosine_to_the_cpu_path(
    cosine: float | None, passed: bool | None, status: int
) -> None:
    out = _out(cosine)
    assert out["gates"] == {GATE: passed}
    assert gpu.exit_status(out) == status  # a missing figure fails the gate too
    verdict = {True: "passed", False: "FAILED", None: "missing"}[passed]
    assert f"gate: {GATE}: {verdict}" in gpu.report(out)


def test_agreement_is_the_row_by_row_cosine() -> None:
    rng = np.random.default_rng(0)
    a = rng.normal(size=(5, 8)).astype(np.float32)
    a /= np.linalg.norm(a, axis=1, keepdims=True)
    b = a.copy()
    b[3] = -b[3]
    got = gpu.embedding_agreement(a, b)
    assert got["cosine_min_vs_cpu_decode"] == pytest.approx(-1.0, abs=1e-6)
    assert got["cosine_mean_vs_cpu_decode"] == pytest.approx(3 / 5, abs=1e-6)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> CLIPEncoder:
    folder = mb.save_model_dir(tmp_path_factory.mktemp("tiny"), mb.causal_cfg())
    return CLIPEncoder(f"local-dir:{folder}", device="cpu", batch_size=4)


@pytest.mark.parametrize("broken", ["decode_rate", "read_rate", "pixel_fidelity", "reference_rate"])
def test_one_failed_measurement_keeps_the_others(
    tiny: CLIPEncoder, broken: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    def boom(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("nvjpeg exploded")

    monkeypatch.setattr(gpu, broken, boom)
    monkeypatch.setenv("CLIP_MM_BENCH_DIR", str(tmp_path))
    paths: list[Path] = make_jpegs(6, workers=1)
    args = argparse.Namespace(workers=1, reference=3)
    figures = gpu.pipeline_section(tiny, paths, args)
    assert list(figures["errors"].values()) == ["RuntimeError: nvjpeg exploded"]
    assert figures["img_per_s"] > 0  # measured before the failure, kept
    assert figures["batch_size"] == 4
    if broken != "decode_rate":
        assert figures["stages"]["decode_preprocess_img_per_s"] > 0  # measured after it
    if broken != "reference_rate":
        assert figures["fidelity"]["cosine_min_vs_cpu_decode"] > 0.999
    if broken != "pixel_fidelity":
        assert figures["fidelity"]["max_abs_level"] <= 1
    out = {"model_only": {}, "naive": {}, "pipeline": figures, "chroma": {}}
    out["goals"], out["gates"] = gpu.goals(out), gpu.gates(out)
    text = gpu.report(out)
    assert "nvjpeg exploded" in text and "files→embeddings (pipeline), img/s" in text
