"""The benchmark suite runs, and its baselines really are the incumbents' code paths.

Timings are not asserted (they depend on the machine); what is asserted is that each
baseline calls the incumbent's own function on our model object, computes the same
embeddings, and that the suite runner and the GPU script's smoke path produce their tables.
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path
from typing import Any
from unittest import mock

import numpy as np
import pytest

from benchmarks import __main__ as suite
from benchmarks import chroma_bench, encoder_bench, gpu
from benchmarks._compare import Figure, alternate, cpu_speedup, markdown_table, percentile
from benchmarks.images import caption_texts, make_jpegs
from clip_multimodal import CLIPEncoder
from tests import model_builders as mb


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny random CLIP with CLIP's 77-token context, so benchmark captions fit."""
    cfg = mb.causal_cfg()
    cfg["text_cfg"]["context_length"] = 77
    return mb.save_model_dir(tmp_path_factory.mktemp("tiny-bench"), cfg)


@pytest.fixture(scope="module")
def tiny(tiny_dir: Path) -> CLIPEncoder:
    # fp32: the incumbents run our model object as open_clip builds it, at fp32.
    return CLIPEncoder(f"local-dir:{tiny_dir}", device="cpu", precision="fp32", batch_size=4)


@pytest.fixture
def bench_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Results and images go to a temporary folder, not the repo's .bench."""
    monkeypatch.setenv("CLIP_MM_BENCH_DIR", str(tmp_path / "bench"))
    monkeypatch.delenv("OUT", raising=False)
    return tmp_path / "bench"


@pytest.fixture
def jpegs(bench_dir: Path) -> list[Path]:
    return make_jpegs(3, size=(64, 48))


def _langchain_class() -> Any:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        from langchain_experimental.open_clip import OpenCLIPEmbeddings
    return OpenCLIPEmbeddings


# --- the baselines are the incumbents -------------------------------------------------


def test_langchain_baseline_is_openclipembeddings_on_our_model(tiny: CLIPEncoder) -> None:
    lc = encoder_bench.langchain_embeddings(tiny)
    assert isinstance(lc, _langchain_class())
    assert lc.model is tiny.model and lc.preprocess is tiny.preprocess


def test_image_baseline_calls_embed_image_with_autograd_on(
    tiny: CLIPEncoder, jpegs: list[Path]
) -> None:
    cls = _langchain_class()
    original = cls.embed_image
    grads_seen: list[bool] = []

    def spy(self: Any, uris: list[str]) -> Any:
        grads_seen.append(all(p.requires_grad for p in self.model.parameters()))
        return original(self, uris)

    with mock.patch.object(cls, "embed_image", autospec=True, side_effect=spy) as called:
        figure = encoder_bench.bench_images(tiny, jpegs, repeats=1)
    assert called.call_count >= 2  # warm-up and timed run (and the agreement check)
    assert called.call_args.args[1] == [str(p) for p in jpegs]
    assert grads_seen and all(grads_seen)  # as in a model fresh from open_clip
    assert not any(p.requires_grad for p in tiny.model.parameters())  # restored for us
    assert figure.details["max_abs_diff_vs_baseline"] < 1e-5  # the same computation
    assert figure.ours > 0 and figure.baseline is not None and figure.baseline > 0


def test_text_baseline_calls_embed_documents(tiny: CLIPEncoder) -> None:
    cls = _langchain_class()
    with mock.patch.object(
        cls, "embed_documents", autospec=True, side_effect=cls.embed_documents
    ) as called:
        figure = encoder_bench.bench_texts(tiny, caption_texts(5), repeats=1)
    assert called.call_count >= 2
    assert figure.details["max_abs_diff_vs_baseline"] < 1e-5


def test_trimmed_and_draft_figures(tiny: CLIPEncoder, jpegs: list[Path]) -> None:
    trimmed = encoder_bench.bench_trimmed(tiny, caption_texts(6), repeats=1)
    assert trimmed.details["max_abs_diff"] < 1e-5  # trimming is exact
    assert trimmed.details["max_tokens"] < 77
    drafted = encoder_bench.bench_draft(tiny, jpegs, repeats=1)
    assert 0 <= drafted.details["cosine_distance_max"] < 0.5


def test_chroma_function_is_chromas_own_on_our_model(tiny: CLIPEncoder) -> None:
    from chromadb.utils.embedding_functions.open_clip_embedding_function import (
        OpenCLIPEmbeddingFunction,
    )

    function = chroma_bench.chroma_clip_function(tiny)
    assert type(function) is OpenCLIPEmbeddingFunction
    assert function._model is tiny.model and function._preprocess is tiny.preprocess
    texts = caption_texts(3)
    theirs = np.stack(function(texts))
    assert np.abs(theirs - tiny.embed_texts(texts)).max() < 1e-5


def test_chroma_ingest_baselines(tiny: CLIPEncoder, jpegs: list[Path], tmp_path: Path) -> None:
    import chromadb
    from chromadb.utils.embedding_functions.open_clip_embedding_function import (
        OpenCLIPEmbeddingFunction,
    )

    client = chromadb.PersistentClient(str(tmp_path / "db"))
    function = chroma_bench.chroma_clip_function(tiny)
    original = OpenCLIPEmbeddingFunction._encode_image
    with (
        chroma_bench.open_clip_answers_with(tiny),
        mock.patch.object(
            OpenCLIPEmbeddingFunction, "_encode_image", autospec=True, side_effect=original
        ) as per_image,
    ):
        name = chroma_bench.chroma_ingest(function, client, jpegs)
    assert per_image.call_count == len(jpegs)  # Chroma's per-item loop really ran
    expected = tiny.embed_images([str(p) for p in jpegs])
    for stored_name in (name, chroma_bench.raw_ingest(tiny, client, jpegs)):
        with chroma_bench.open_clip_answers_with(tiny):  # Chroma rebuilds its function here
            got = client.get_collection(stored_name).get(include=["embeddings"])
        order = np.argsort([int(i) for i in got["ids"]])
        stored = np.asarray(got["embeddings"])[order]
        assert np.abs(stored - expected).max() < 1e-5
    ours = client.get_collection(chroma_bench.ours_ingest(tiny, client, jpegs))
    assert ours.count() == len(jpegs)


def test_chroma_suite_runs_tiny(tiny: CLIPEncoder, bench_dir: Path) -> None:
    figures = chroma_bench.run(3, 4, 1, queries=3, n_vectors=20, encoder=tiny)
    names = [f.benchmark for f in figures]
    assert names[0] == names[1] == "image ingest into Chroma (CPU)"
    query = next(f for f in figures if f.benchmark.startswith("text query"))
    assert query.met is not None and query.details["p99_ms"] >= query.ours > 0


# --- the harness ------------------------------------------------------------------------


def test_alternate_rotates_who_goes_first() -> None:
    order: list[str] = []
    cpu: dict[str, list[float]] = {}
    runs = {"a": lambda: order.append("a"), "b": lambda: sum(range(200_000))}
    seconds = alternate(runs, 3, cpu=cpu)
    assert order == ["a", "a", "a", "a"]  # warm-up, then once per round
    assert all(len(v) == 3 for v in seconds.values()) and all(len(v) == 3 for v in cpu.values())
    assert cpu_speedup(cpu, "a", "b") is not None and cpu_speedup(cpu, "a", "b") > 1
    assert cpu_speedup(cpu, "a", "missing") is None
    names: list[str] = []
    alternate({"a": lambda: names.append("a"), "b": lambda: names.append("b")}, 3)
    assert names == ["a", "b", "a", "b", "b", "a", "a", "b"]  # rotating who goes first


def test_percentile_and_table() -> None:
    assert percentile([1.0, 2.0, 3.0, 4.0], 50) == pytest.approx(2.5)
    assert percentile([5.0], 99) == 5.0
    rows = [
        Figure("ingest", 30.0, "img/s", 10.0, "incumbent", goal="≥ 3×", met=True),
        Figure("query", 12.0, "ms", 8.0, "raw", goal="≤ 1.2×", met=False),
    ]
    table = markdown_table(rows)
    assert "| ingest | 30 img/s | 10 img/s (incumbent) | 3.00× | ≥ 3× | yes |" in table
    assert "1.50×" in table and "**no**" in table


def test_images_are_deterministic_and_cached(bench_dir: Path) -> None:
    first = make_jpegs(2, size=(40, 30))
    before = [p.read_bytes() for p in first]
    first[0].unlink()
    again = make_jpegs(2, size=(40, 30), workers=2)
    assert [p.read_bytes() for p in again] == before
    assert caption_texts(4) == caption_texts(4)


# --- the suite runner and the GPU script ------------------------------------------------


def test_suite_runner_writes_table_and_json(
    tiny: CLIPEncoder, bench_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(smoke: bool, encoder: Any) -> list[Figure]:
        raise RuntimeError("boom")

    monkeypatch.setattr(encoder_bench, "random_vit_b32", lambda: tiny)
    monkeypatch.setitem(suite.SUITES, "broken", suite.Suite("broken", broken))
    code = suite.main(["--suite", "smoke", "--only", "encoder", "broken"])
    assert code == 1  # a failed suite fails the run, after the others reported
    markdown = (bench_dir / "results-smoke.md").read_text()
    assert markdown.startswith("Machine: ")
    assert "| embed_images, files (CPU, ViT-B-32 fp32) |" in markdown
    assert "- broken: RuntimeError: boom" in markdown
    assert "Work saved" in markdown  # CPU-time ratios, for shared machines
    data = json.loads((bench_dir / "results-smoke.json").read_text())
    assert data["machine"]["cores"] >= 1 and data["machine"]["torch"]
    assert data["suites"]["broken"]["error"] == "RuntimeError: boom"
    assert len(data["figures"]) == data["suites"]["encoder"]["figures"] == 4


def test_gpu_script_smoke_path(tiny_dir: Path, bench_dir: Path) -> None:
    out = gpu.main(["--smoke", "--model", f"local-dir:{tiny_dir}"])
    assert out["device"] == "cpu"
    for section in ("model_only", "naive", "pipeline", "chroma"):
        assert "error" not in out[section], out[section]
    assert out["model_only"]["img_per_s"] > 0
    assert out["pipeline"]["img_per_s"] > 0 and out["naive"]["img_per_s"] > 0
    assert out["pipeline"]["vs_naive"] > 0
    assert out["pipeline"]["fidelity"]["cosine_min_vs_cpu_decode"] > 0.99
    assert out["pipeline"]["fidelity"]["max_abs_level"] <= 1
    assert set(out["goals"]) == {
        "files→embeddings >= 8000 img/s",
        "files→embeddings >= 300x naive",
        "model-only MFU >= 0.35",
        "files→Chroma >= 0.9x Chroma's own",
    }
    assert out["goals"]["model-only MFU >= 0.35"] is None  # no peak known for a CPU
    assert out["chroma"]["img_per_s"] > 0 and out["chroma"]["chroma_own_vectors_per_s"] > 0
    written = json.loads((bench_dir / "gpu-smoke.json").read_text())
    assert written["pipeline"]["batch_size"] == out["pipeline"]["batch_size"]


def test_gpu_report_survives_a_failed_section() -> None:
    def boom() -> dict[str, Any]:
        raise RuntimeError("nvjpeg exploded")

    failed = gpu.guarded("files→embeddings", boom)
    assert failed == {"error": "RuntimeError: nvjpeg exploded"}
    out = {
        "model_only": {"img_per_s": 30000.0, "mfu": 0.3, "best_variant": "x", "best_batch": 8},
        "naive": {"img_per_s": 27.0},
        "pipeline": failed,
        "chroma": {"skipped": "chromadb is not installed here"},
    }
    out["goals"] = gpu.goals(out)
    assert out["goals"]["model-only MFU >= 0.35"] is False
    assert out["goals"]["files→embeddings >= 8000 img/s"] is None
    text = gpu.report(out)
    assert "| model-only img/s (bf16, x, batch 8) | 30,000 |  |" in text
    assert "pipeline: RuntimeError: nvjpeg exploded" in text
    assert "chroma: chromadb is not installed here" in text


def test_peak_table_matches_card_names() -> None:
    assert gpu.peak_tflops("NVIDIA H100 80GB HBM3") == 989.0
    assert gpu.peak_tflops("NVIDIA H100 PCIe") == 756.0
    assert gpu.peak_tflops("NVIDIA H200") == 989.0
    assert gpu.peak_tflops("Some Future Card") is None
    # Whole words: an L40 is not an L4, an H200 NVL is not an H200 SXM.
    assert gpu.peak_tflops("NVIDIA L40") == 181.0
    assert gpu.peak_tflops("NVIDIA L4") == 121.0
    assert gpu.peak_tflops("NVIDIA H200 NVL") == 835.0
    assert gpu.peak_tflops("NVIDIA GH200 480GB") == 989.0


def test_the_reference_decodes_on_the_cpu_even_when_the_encoder_uses_the_pipeline(
    tiny_dir: Path,
) -> None:
    from clip_multimodal import CLIPEncoder

    encoder = CLIPEncoder(f"local-dir:{tiny_dir}", device="cpu", device_pipeline=True)
    assert encoder._device_pipeline is not None  # what device="cuda" gives by itself
    reference = gpu.reference_encoder(encoder)
    assert reference._device_pipeline is None
    assert reference.model_id == encoder.model_id and reference.spec == encoder.spec


def test_native_norms_variant_computes_the_same_embeddings(tiny_dir: Path) -> None:
    import torch
    from open_clip.transformer import LayerNormFp32

    bf16 = CLIPEncoder(f"local-dir:{tiny_dir}", device="cpu", precision="bf16")
    assert any(isinstance(m, LayerNormFp32) for m in bf16.model.modules())
    variant = gpu.with_native_norms(bf16.model)
    assert not any(isinstance(m, LayerNormFp32) for m in variant.modules())
    assert any(isinstance(m, LayerNormFp32) for m in bf16.model.modules())  # a copy
    pixels = torch.randn((4, 3, 32, 32)).to(torch.bfloat16)
    with torch.inference_mode():
        a = torch.nn.functional.normalize(bf16.model.encode_image(pixels).float(), dim=-1)
        b = torch.nn.functional.normalize(variant.encode_image(pixels).float(), dim=-1)
    assert (a * b).sum(dim=-1).min().item() > 0.99  # bf16 rounding only


@pytest.mark.slow
def test_folder_bench_compares_index_folder_with_its_floor(tmp_path: Path) -> None:
    from benchmarks import folder_bench

    ours, rss, reindex = folder_bench.run([12], root=tmp_path)
    assert "demo model" in ours.benchmark and ours.baseline and ours.ours > 0
    assert ours.details["ours"]["report"].startswith("added 12,")
    assert rss.ours > 0 and rss.baseline and rss.baseline > 0
    assert reindex.details["reindex"]["report"].startswith("added 0, updated 0, unchanged 12")


def test_a_worker_reports_its_own_peak_rss_not_its_large_parents() -> None:
    import subprocess
    import sys

    ballast = bytearray(1200 * 2**20)
    ballast[:: 2**12] = b"\x01" * len(ballast[:: 2**12])  # touch every page: resident
    code = "from benchmarks._common import peak_rss_mib; print(peak_rss_mib())"
    done = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        check=True,
        cwd=Path(__file__).resolve().parent.parent,
    )
    # about 500 MiB: torch, Chroma and the benchmarks' imports; ru_maxrss would give > 1,200
    assert float(done.stdout) < 1000
    del ballast


def test_the_ingest_profile_times_every_stage() -> None:
    from benchmarks import profile_ingest

    total, stages, precision = profile_ingest.profile("demo", 40, "fp32")
    assert precision == "fp32" and total > 0
    for stage in ("plan", "read", "lookups", "model", "writes"):
        assert stages.seconds[stage] > 0, stage  # each patched stage was reached
    assert sum(stages.seconds[s] for s in ("plan", "read", "lookups", "model")) < total
    assert "| model |" in profile_ingest.report(total, stages, 40)
