"""The offline error for the default model offers the demo model's alias, which works."""

from __future__ import annotations

from pathlib import Path

import pytest

from clip_multimodal import CLIPEncoder, ModelNotAvailableError
from clip_multimodal.models import DEMO_MODEL_NAME

QUERIES = ["a red circle", "a handwritten seven", "a silhouette of a cat"]


def test_default_model_offline_names_the_demo_alias(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import huggingface_hub.constants

    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hf"))
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "hf"))
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(ModelNotAvailableError) as info:
        CLIPEncoder(device="cpu")  # the default, ViT-B-32 / laion2b_s34b_b79k
    assert f"CLIPEncoder('{DEMO_MODEL_NAME}')" in str(info.value)
    assert f"model_name='{DEMO_MODEL_NAME}'" in str(info.value)
    # The advice works as written, in the same offline setting.
    vectors = CLIPEncoder(DEMO_MODEL_NAME, device="cpu").embed_texts(QUERIES)
    assert vectors.shape == (3, 128)
