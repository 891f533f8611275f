"""CLIPEmbeddings in isolation: the standard unit suite, types, batching, async, config."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pytest
from langchain_clip_multimodal import CLIPEmbeddings
from langchain_tests.unit_tests import EmbeddingsUnitTests
from PIL import Image
from pydantic import ValidationError

from clip_multimodal.errors import ImageLoadError, ModelNotAvailableError
from clip_multimodal.models import DEMO_MODEL
from clip_multimodal.testing import FakeEncoder
from clip_multimodal.types import ImageInput


class TestCLIPEmbeddingsStandard(EmbeddingsUnitTests):
    @property
    def embeddings_class(self) -> type[CLIPEmbeddings]:
        return CLIPEmbeddings

    @property
    def embedding_model_params(self) -> dict[str, str]:
        return {"model_name": DEMO_MODEL, "device": "cpu"}


class SlowThreadRecordingEncoder(FakeEncoder):
    """Records the thread each call runs on, and takes a while, like a real model."""

    def __init__(self) -> None:
        super().__init__()
        self.threads: list[int] = []

    def embed_texts(self, texts: Sequence[str]) -> np.ndarray:
        self.threads.append(threading.get_ident())
        time.sleep(0.2)
        return super().embed_texts(texts)

    def embed_images(self, images: Sequence[ImageInput]) -> np.ndarray:
        self.threads.append(threading.get_ident())
        time.sleep(0.2)
        return super().embed_images(images)


@pytest.fixture
def pngs(tmp_path: Path) -> list[str]:
    paths = []
    for i, colour in enumerate(["red", "green", "blue"]):
        path = tmp_path / f"{colour}.png"
        Image.new("RGB", (40 + i * 10, 30), colour).save(path)
        paths.append(str(path))
    return paths


def test_texts_are_python_floats_batched_in_one_call(fake_encoder: FakeEncoder) -> None:
    embeddings = CLIPEmbeddings(encoder=fake_encoder)
    vectors = embeddings.embed_documents(["a cat", "a dog", "a bird"])
    assert fake_encoder.calls == [("embed_texts", 3)]
    assert all(type(x) is float for row in vectors for x in row)
    expected = fake_encoder.embed_texts(["a cat", "a dog", "a bird"])
    np.testing.assert_allclose(vectors, expected, rtol=1e-6)
    assert embeddings.embed_query("a dog") == vectors[1]


def test_images_are_embedded_in_one_batch(fake_encoder: FakeEncoder, pngs: list[str]) -> None:
    embeddings = CLIPEmbeddings(encoder=fake_encoder)
    vectors = embeddings.embed_image(pngs)
    assert fake_encoder.calls == [("embed_images", 3)]
    assert len(vectors) == 3 and all(type(x) is float for x in vectors[0])
    np.testing.assert_allclose(vectors, fake_encoder.embed_images(pngs), rtol=1e-6)


def test_unreadable_image_names_the_input(fake_encoder: FakeEncoder, tmp_path: Path) -> None:
    missing = tmp_path / "missing.png"
    with pytest.raises(ImageLoadError, match=r"missing\.png"):
        CLIPEmbeddings(encoder=fake_encoder).embed_image([str(missing)])


async def test_async_methods_run_off_the_event_loop(pngs: list[str]) -> None:
    encoder = SlowThreadRecordingEncoder()
    embeddings = CLIPEmbeddings(encoder=encoder)
    ticks = 0

    async def ticker() -> None:
        nonlocal ticks
        while True:
            await asyncio.sleep(0.01)
            ticks += 1

    task = asyncio.create_task(ticker())
    query = await embeddings.aembed_query("a cat")
    docs = await embeddings.aembed_documents(["a cat", "a dog"])
    images = await embeddings.aembed_image(pngs[:1])
    task.cancel()
    assert ticks >= 20  # the loop kept running during the 0.6 s of "model" time
    assert threading.get_ident() not in encoder.threads
    assert query == docs[0] == embeddings.embed_query("a cat")
    assert images == embeddings.embed_image(pngs[:1])


def test_loads_the_model_lazily_and_fails_with_the_core_error() -> None:
    embeddings = CLIPEmbeddings(model_name="local-dir:/nonexistent/model", device="cpu")
    with pytest.raises(ModelNotAvailableError, match=r"open_clip_config\.json"):
        embeddings.embed_query("a cat")


def test_config_is_validated_and_the_encoder_is_not_serialized(
    fake_encoder: FakeEncoder,
) -> None:
    with pytest.raises(ValidationError):
        CLIPEmbeddings(model="ViT-B-32")  # type: ignore[call-arg]
    with pytest.raises(ValidationError):
        CLIPEmbeddings(precision="fp8")  # type: ignore[arg-type]
    with pytest.raises(ValidationError):
        CLIPEmbeddings(encoder=object())  # type: ignore[arg-type]
    dumped = CLIPEmbeddings(encoder=fake_encoder, device="cpu").model_dump()
    assert "encoder" not in dumped
    assert dumped["device"] == "cpu"
    assert CLIPEmbeddings(encoder=fake_encoder).model_id == fake_encoder.model_id


def test_copies_keep_working(fake_encoder: FakeEncoder) -> None:
    embeddings = CLIPEmbeddings(encoder=fake_encoder)
    copy = embeddings.model_copy(deep=True)
    assert copy.embed_query("a cat") == embeddings.embed_query("a cat")


def test_fields_are_one_model_spec() -> None:
    """The fields build the core's `ModelSpec`, the one every entry point builds (see the
    core's tests/test_model_spec.py), and the encoder loaded from them reports it back."""
    from clip_multimodal.models import DEFAULT_PRETRAINED, DEMO_MODEL_NAME, ModelSpec

    spec = ModelSpec(DEMO_MODEL_NAME, None, device="cpu", precision="fp32", batch_size=8)
    embeddings = CLIPEmbeddings(
        model_name=DEMO_MODEL_NAME, device="cpu", precision="fp32", batch_size=8
    )
    assert embeddings.spec == spec
    assert embeddings.client.spec == spec  # type: ignore[attr-defined]
    # The demo alias names its weights: no tag is shown for it (it would be ignored).
    assert CLIPEmbeddings(model_name=DEMO_MODEL_NAME).pretrained is None
    assert CLIPEmbeddings().pretrained == DEFAULT_PRETRAINED
    with pytest.raises(ValidationError, match="device"):
        CLIPEmbeddings(device="")


def test_open_clip_embeddings_arguments_work_unchanged(tmp_path: Path) -> None:
    """OpenCLIPEmbeddings' `model_name` + `checkpoint`: the checkpoint is our `pretrained`."""
    import open_clip
    import torch
    from safetensors.torch import save_file

    from clip_multimodal import CLIPEncoder

    torch.manual_seed(0)
    model = open_clip.create_model("ViT-S-32-alt")
    weights = tmp_path / "weights.safetensors"
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(weights))
    embeddings = CLIPEmbeddings(model_name="ViT-S-32-alt", checkpoint=str(weights), device="cpu")
    assert embeddings.pretrained == embeddings.checkpoint == str(weights)
    reference = CLIPEncoder("ViT-S-32-alt", str(weights), device="cpu")
    np.testing.assert_allclose(
        embeddings.embed_query("a cat"), reference.embed_texts(["a cat"])[0], atol=1e-6
    )
    with pytest.raises(ValidationError, match="give one"):
        CLIPEmbeddings(checkpoint="openai", pretrained="laion2b_s34b_b79k")


def test_openai_names_mean_openai_weights(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import huggingface_hub.constants

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "hf"))
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")  # resolution only: no download
    embeddings = CLIPEmbeddings(model_name="ViT-B/32", device="cpu")
    assert embeddings.pretrained == "openai"
    with pytest.raises(ModelNotAvailableError, match="ViT-B-32 / openai"):
        embeddings.embed_query("a cat")
