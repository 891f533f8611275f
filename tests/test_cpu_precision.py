"""`precision="auto"` on the CPU: bf16 where the CPU runs it natively and faster, else fp32.

The choice is made from the CPU's flags and a short timed probe (faked here to test the
logic); the quality tests run bf16 for real against fp32, on the demo model and a ViT-B-32.
"""

from __future__ import annotations

import itertools
from pathlib import Path
from typing import Any

import numpy as np
import open_clip
import pytest
import torch

from clip_multimodal import _cpu_precision
from clip_multimodal.encoder import CLIPEncoder, pick_precision
from clip_multimodal.models import DEMO_MODEL
from clip_multimodal.training.demo_model import heldout_groups
from clip_multimodal.training.evaluate import precision_at_k
from tests import model_builders as mb

CPU = torch.device("cpu")


@pytest.fixture
def fresh_probe(monkeypatch: pytest.MonkeyPatch) -> None:
    """No answer cached for this test; the process's own answer is back after it (encoders
    of other tests must keep one precision)."""
    monkeypatch.setattr(_cpu_precision, "_probed", {})


def _fake_seconds(bf16: float, fp32: float) -> Any:
    return lambda dtype: bf16 if dtype == torch.bfloat16 else fp32


# -- the choice -------------------------------------------------------------------------------


def test_a_cpu_without_native_bf16_is_never_probed() -> None:
    def never(dtype: torch.dtype) -> float:
        raise AssertionError("probed a CPU without native bf16")

    assert _cpu_precision.prefers_bf16(False, never) is False


@pytest.mark.parametrize(
    ("bf16", "fp32", "expected"),
    [(0.5, 1.0, True), (2.0, 1.0, False), (0.95, 1.0, False)],
    ids=["bf16-faster", "bf16-slower", "a-tie"],
)
def test_the_probe_picks_bf16_only_when_clearly_faster(
    bf16: float, fp32: float, expected: bool
) -> None:
    assert _cpu_precision.prefers_bf16(True, _fake_seconds(bf16, fp32)) is expected


def test_the_probe_times_with_its_timer() -> None:
    # Each timed run reads the clock twice; a fake clock advancing 0.25 s a read gives 0.25 s.
    clock = itertools.count(step=0.25)
    assert _cpu_precision.linear_seconds(torch.float32, timer=lambda: next(clock)) == 0.25


@pytest.mark.parametrize(("bf16", "expected"), [(2.0, "fp32"), (0.5, "bf16")])
def test_auto_on_a_cpu_with_the_flag_follows_the_probe(
    bf16: float, expected: str, fresh_probe: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(_cpu_precision, "cpu_has_native_bf16", lambda: True)
    monkeypatch.setattr(_cpu_precision, "linear_seconds", _fake_seconds(bf16, 1.0))
    assert pick_precision("auto", CPU) == expected
    assert pick_precision("fp32", CPU) == "fp32"  # an explicit choice is never overridden


def test_the_probe_times_one_thread_and_restores_the_thread_count(
    fresh_probe: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    seen: list[int] = []

    def seconds(dtype: torch.dtype) -> float:
        seen.append(torch.get_num_threads())
        return 0.5 if dtype == torch.bfloat16 else 1.0

    monkeypatch.setattr(_cpu_precision, "cpu_has_native_bf16", lambda: True)
    monkeypatch.setattr(_cpu_precision, "linear_seconds", seconds)
    before = torch.get_num_threads()
    assert _cpu_precision.cpu_prefers_bf16() is True
    assert set(seen) == {1} and torch.get_num_threads() == before
    assert _cpu_precision.cpu_prefers_bf16() is True and len(seen) == 4  # probed once


def test_auto_without_the_flag_is_fp32(fresh_probe: None, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_cpu_precision, "cpu_has_native_bf16", lambda: False)
    assert pick_precision("auto", CPU) == "fp32"


def test_the_flag_is_read_through_torch() -> None:
    caps = torch.cpu.get_capabilities()
    native = bool(caps.get("avx512_bf16") or caps.get("amx_bf16"))
    assert _cpu_precision.cpu_has_native_bf16() is native


def test_the_encoder_reports_what_auto_chose(demo_encoder: Any) -> None:
    expected = "bf16" if _cpu_precision.cpu_prefers_bf16() else "fp32"
    assert demo_encoder.precision == expected == demo_encoder.spec.precision
    fp32 = CLIPEncoder(DEMO_MODEL, device="cpu", precision="fp32")
    # Both precisions share one index: the model id does not name the precision.
    assert demo_encoder.model_id == fp32.model_id


# -- bf16 keeps retrieval quality -------------------------------------------------------------


@pytest.fixture(scope="module")
def demo_pair() -> tuple[CLIPEncoder, CLIPEncoder]:
    return (
        CLIPEncoder(DEMO_MODEL, device="cpu", precision="fp32"),
        CLIPEncoder(DEMO_MODEL, device="cpu", precision="bf16"),
    )


def _cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    out: np.ndarray = np.sum(a * b, axis=1)  # both are L2-normalized
    return out


@pytest.fixture(scope="module")
def demo_groups() -> dict[str, Any]:
    return heldout_groups(per_group=240, seed=5)


@pytest.mark.parametrize("group", ["shapes", "digits", "animals"])
def test_bf16_keeps_heldout_precision_at_10(
    group: str, demo_pair: tuple[CLIPEncoder, CLIPEncoder], demo_groups: dict[str, Any]
) -> None:
    samples, queries = demo_groups[group]
    labels = [s.label for s in samples]
    scores = []
    for encoder in demo_pair:
        texts = encoder.embed_texts(list(queries.values()))
        images = encoder.embed_images([s.image for s in samples])
        scores.append(precision_at_k(texts, images, list(queries), labels, k=10))
    assert abs(scores[1] - scores[0]) <= 0.005, scores


def test_bf16_vectors_match_fp32_on_the_demo_model(
    demo_pair: tuple[CLIPEncoder, CLIPEncoder], demo_groups: dict[str, Any]
) -> None:
    samples = [s for samples, _ in demo_groups.values() for s in samples[:80]]
    texts = [q for _, queries in demo_groups.values() for q in queries.values()]
    fp32, bf16 = demo_pair
    for embed in ("embed_images", "embed_texts"):
        items = [s.image for s in samples] if embed == "embed_images" else texts
        cos = _cosines(getattr(fp32, embed)(items), getattr(bf16, embed)(items))
        assert cos.mean() >= 0.9999 and cos.min() >= 0.999, (embed, cos.mean(), cos.min())


@pytest.mark.slow
def test_bf16_vectors_match_fp32_on_a_vit_b_32() -> None:
    # Random weights: the architecture's numerics, not trained features, decide the error.
    torch.manual_seed(0)
    fp32 = open_clip.create_model("ViT-B-32").eval()
    torch.manual_seed(0)
    bf16 = open_clip.create_model("ViT-B-32", precision="bf16").eval()
    pixels = torch.randn(8, 3, 224, 224, generator=torch.Generator().manual_seed(1))
    tokens = open_clip.get_tokenizer("ViT-B-32")(["a photo of a cat", "a red circle"] * 4)
    with torch.inference_mode():
        pairs = [
            (fp32.encode_image(pixels), bf16.encode_image(pixels.bfloat16())),
            (fp32.encode_text(tokens), bf16.encode_text(tokens)),
        ]
    for a, b in pairs:
        cos = torch.nn.functional.cosine_similarity(a.float(), b.float()).numpy()
        assert cos.mean() >= 0.9999 and cos.min() >= 0.999, (cos.mean(), cos.min())


def test_auto_falls_back_to_fp32_for_a_hugging_face_tower(
    tmp_path: Path, fresh_probe: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    # open_clip's bf16 cast leaves a Hugging Face tower half fp32: it could not run.
    monkeypatch.setattr(_cpu_precision, "cpu_has_native_bf16", lambda: True)
    monkeypatch.setattr(_cpu_precision, "linear_seconds", _fake_seconds(0.5, 1.0))
    folder = mb.save_tiny_bert(tmp_path / "m")
    enc = CLIPEncoder(
        f"local-dir:{mb.save_model_dir(folder, mb.hf_text_cfg(folder))}", device="cpu"
    )
    assert enc.precision == enc.spec.precision == "fp32"
    assert enc.embed_texts(["a red circle"]).shape == (1, enc.dim)
    # The demo model's own towers take the cast.
    assert CLIPEncoder(DEMO_MODEL, device="cpu").precision == "bf16"
