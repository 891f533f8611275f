"""Every way to name a model, and the fast offline failure."""

from __future__ import annotations

import shutil
import time
from pathlib import Path

import numpy as np
import open_clip
import pytest
import torch
from safetensors.torch import save_file

from clip_multimodal import CLIPEncoder, ModelNotAvailableError
from clip_multimodal.models import DEMO_MODEL_DIR, resolve_model


@pytest.fixture
def empty_caches(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Point every weights cache at an empty folder."""
    import huggingface_hub.constants

    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hf"))
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "hf"))
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    return tmp_path


def test_uncached_tag_fails_fast_with_instructions(empty_caches: Path) -> None:
    start = time.monotonic()
    with pytest.raises(ModelNotAvailableError) as info:
        CLIPEncoder("ViT-B-32", "laion2b_s34b_b79k", device="cpu")
    assert time.monotonic() - start < 2.0
    message = str(info.value)
    assert "ViT-B-32" in message and "laion2b_s34b_b79k" in message
    assert "local-dir:" in message and "cache" in message and "pretrained=" in message


def test_uncached_hf_hub_fails_fast(empty_caches: Path) -> None:
    start = time.monotonic()
    with pytest.raises(ModelNotAvailableError, match="hf-hub:laion/CLIP-ViT-B-32"):
        CLIPEncoder("hf-hub:laion/CLIP-ViT-B-32-laion2B-s34B-b79K", device="cpu")
    assert time.monotonic() - start < 2.0


def test_hf_hub_offline_env_fails_at_once(
    empty_caches: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(ModelNotAvailableError, match="HF_HUB_OFFLINE"):
        resolve_model("ViT-B-32", "openai")


def _fake_hf_cache(cache: Path, repo: str, files: Path) -> None:
    """Lay out a Hugging Face cache entry, as `hf download` would leave it."""
    entry = cache / f"models--{repo.replace('/', '--')}"
    snapshot = entry / "snapshots" / "0123456789abcdef"
    snapshot.mkdir(parents=True)
    (entry / "refs").mkdir()
    (entry / "refs" / "main").write_text("0123456789abcdef")
    for f in files.iterdir():
        if f.suffix in (".json", ".safetensors"):
            shutil.copy(f, snapshot / f.name)


def test_cached_hf_hub_model_loads_offline(empty_caches: Path, demo_encoder: CLIPEncoder) -> None:
    _fake_hf_cache(empty_caches / "hf", "acme/demo-clip", DEMO_MODEL_DIR)
    enc = CLIPEncoder("hf-hub:acme/demo-clip", device="cpu")
    assert enc.model_id.startswith("hf-hub:acme/demo-clip@sha256:")
    assert enc.model_id.split("@")[1] == demo_encoder.model_id.split("@")[1]
    texts = ["a handwritten seven"]
    np.testing.assert_allclose(enc.embed_texts(texts), demo_encoder.embed_texts(texts), atol=1e-6)


def test_cached_tag_loads_offline_from_the_hf_cache(empty_caches: Path) -> None:
    arch, tag = "ViT-S-32-alt", "offline_test_tag"
    model = open_clip.create_model(arch)
    path = empty_caches / "weights.safetensors"
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(path))
    cfg = {"hf_hub": "acme/vit-s-32-alt/", "mean": (0.5, 0.5, 0.5), "std": (0.5, 0.5, 0.5)}
    open_clip.pretrained._PRETRAINED.setdefault(arch, {})[tag] = cfg
    try:
        snapshot = empty_caches / "files"
        snapshot.mkdir()
        shutil.copy(path, snapshot / "open_clip_model.safetensors")
        (snapshot / "open_clip_config.json").write_text("{}")
        _fake_hf_cache(empty_caches / "hf", "acme/vit-s-32-alt", snapshot)
        start = time.monotonic()
        enc = CLIPEncoder(arch, tag, device="cpu")
        assert time.monotonic() - start < 30
        assert enc.model_id == f"{arch}/{tag}"
        # the tag's preprocessing (mean/std) is applied, as open_clip would
        assert enc.preprocess.transforms[-1].mean == (0.5, 0.5, 0.5)
    finally:
        del open_clip.pretrained._PRETRAINED[arch][tag]


@pytest.mark.parametrize("suffix", [".safetensors", ".pt", ".bin"])
def test_local_weights_file_of_each_format(tmp_path: Path, suffix: str) -> None:
    torch.manual_seed(0)
    model = open_clip.create_model("ViT-S-32-alt")
    state = {k: v.contiguous() for k, v in model.state_dict().items()}
    path = tmp_path / f"weights{suffix}"
    if suffix == ".safetensors":
        save_file(state, str(path))
    else:
        torch.save(state, path)
    enc = CLIPEncoder("ViT-S-32-alt", str(path), device="cpu", precision="fp32")
    assert enc.model_id.startswith("ViT-S-32-alt@sha256:")
    model.eval()
    with torch.no_grad():
        ref = torch.nn.functional.normalize(model.encode_text(enc.tokenizer(["a cat"])), dim=-1)
    np.testing.assert_allclose(enc.embed_texts(["a cat"]), ref.numpy(), atol=1e-5)


def test_unknown_tag_lists_known_tags() -> None:
    with pytest.raises(ModelNotAvailableError, match="laion2b_s34b_b79k"):
        resolve_model("ViT-B-32", "no-such-tag")


def test_missing_weights_file_is_named() -> None:
    with pytest.raises(ModelNotAvailableError, match=r"not found: /nope/w\.safetensors"):
        resolve_model("ViT-B-32", "/nope/w.safetensors")


def test_unknown_architecture() -> None:
    with pytest.raises(ModelNotAvailableError, match="unknown model architecture"):
        resolve_model("ViT-Z-99", None)


def test_local_dir_without_config(tmp_path: Path) -> None:
    with pytest.raises(ModelNotAvailableError, match=r"open_clip_config\.json"):
        CLIPEncoder(f"local-dir:{tmp_path}")


def test_random_weights_get_a_unique_id() -> None:
    a, b = resolve_model("ViT-S-32-alt", None), resolve_model("ViT-S-32-alt", None)
    assert a.model_id != b.model_id and "random" in a.model_id
