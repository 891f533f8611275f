"""CLIPMultiModalEmbedding: the contract on the real demo model, plus its own behaviour."""

from __future__ import annotations

import asyncio
import base64
import threading
from collections.abc import Iterator
from io import BytesIO
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from llama_index.core.schema import ImageNode
from llama_index.embeddings.clip_multimodal import (
    CLIPMultiModalEmbedding,
    image_node_to_input,
    to_image_input,
)
from llama_index_clip_contracts import MultiModalEmbeddingContract
from PIL import Image

from clip_multimodal.errors import ImageLoadError
from clip_multimodal.testing import FakeEncoder


@pytest.fixture(scope="module")
def exact_demo(demo_encoder: Any) -> Any:
    """The demo model at fp32: the contract compares a batch with single calls exactly, and
    bf16 kernels (`auto` on a bf16-native CPU) may round a row differently in another batch."""
    from clip_multimodal import CLIPEncoder

    return CLIPEncoder(demo_encoder.model_name, device="cpu", precision="fp32")


class TestDemoModelContract(MultiModalEmbeddingContract):
    """The real model: the bundled demo CLIP (at fp32, see `exact_demo`)."""

    @pytest.fixture
    def embed_model(self, exact_demo: Any) -> CLIPMultiModalEmbedding:
        return CLIPMultiModalEmbedding(encoder=exact_demo)


class TestFakeEncoderContract(MultiModalEmbeddingContract):
    """The shipped test double honours the same contract, so users can test with it."""

    @pytest.fixture
    def embed_model(self) -> CLIPMultiModalEmbedding:
        return CLIPMultiModalEmbedding(encoder=FakeEncoder())


class SpyEncoder(FakeEncoder):
    """Records the thread of every call and every batch's inputs."""

    def __init__(self) -> None:
        super().__init__()
        self.threads: list[int] = []
        self.image_batches: list[list[Any]] = []

    def embed_texts(self, texts: Any) -> np.ndarray:
        self.threads.append(threading.get_ident())
        return super().embed_texts(texts)

    def embed_images(self, images: Any) -> np.ndarray:
        self.threads.append(threading.get_ident())
        self.image_batches.append(list(images))
        return super().embed_images(images)


@pytest.fixture
def png(tmp_path: Path) -> Path:
    path = tmp_path / "square.png"
    image = Image.new("RGB", (40, 30), "navy")
    image.paste("orange", (5, 5, 20, 20))
    image.save(path)
    return path


# -- construction -----------------------------------------------------------------------


def test_model_spec_loads_a_real_encoder(demo_encoder: Any) -> None:
    embed = CLIPMultiModalEmbedding(model_name=demo_encoder.model_name, device="cpu")
    assert embed.model_id == demo_encoder.model_id
    assert embed.pretrained is None  # local-dir specs carry no pretrained tag
    expected = demo_encoder.embed_texts(["a red circle"])[0]
    np.testing.assert_allclose(embed.get_text_embedding("a red circle"), expected, atol=1e-5)


def test_encoder_fixes_the_described_fields(demo_encoder: Any) -> None:
    embed = CLIPMultiModalEmbedding(encoder=demo_encoder)
    assert embed.encoder is demo_encoder
    assert embed.model_name == demo_encoder.model_name
    assert embed.device == "cpu"
    assert embed.precision == demo_encoder.precision  # what `auto` chose on this CPU
    assert embed.dim == demo_encoder.dim
    assert embed.class_name() == "CLIPMultiModalEmbedding"
    assert embed.to_dict()["model_name"] == demo_encoder.model_name


def test_encoder_and_model_spec_together_is_an_error() -> None:
    with pytest.raises(ValueError, match="not both"):
        CLIPMultiModalEmbedding(encoder=FakeEncoder(), model_name="ViT-B-32")


def test_unknown_model_fails_fast_with_a_named_error() -> None:
    from clip_multimodal.errors import ModelNotAvailableError

    with pytest.raises(ModelNotAvailableError, match="no-such-arch"):
        CLIPMultiModalEmbedding(model_name="no-such-arch", pretrained=None)


# -- batching ---------------------------------------------------------------------------


def test_a_batch_is_one_model_call() -> None:
    spy = SpyEncoder()
    embed = CLIPMultiModalEmbedding(encoder=spy, embed_batch_size=8)
    embed.get_text_embedding_batch([f"t{i}" for i in range(20)])
    assert spy.calls == [("embed_texts", 8), ("embed_texts", 8), ("embed_texts", 4)]


def test_image_batch_is_one_model_call(png: Path) -> None:
    spy = SpyEncoder()
    embed = CLIPMultiModalEmbedding(encoder=spy, embed_batch_size=16)
    embed.get_image_embedding_batch([str(png)] * 5)
    assert [n for kind, n in spy.calls if kind == "embed_images"] == [5]


async def test_async_runs_in_a_worker_thread(png: Path) -> None:
    spy = SpyEncoder()
    embed = CLIPMultiModalEmbedding(encoder=spy)
    await embed.aget_text_embedding_batch(["a", "b"])
    await embed.aget_image_embedding(str(png))
    await embed.aget_query_embedding("q")
    loop_thread = threading.get_ident()
    assert len(spy.threads) == 3
    assert loop_thread not in spy.threads


async def test_async_calls_overlap_on_the_loop(demo_encoder: Any, png: Path) -> None:
    """Many concurrent embeddings complete and each matches its sync result."""
    embed = CLIPMultiModalEmbedding(encoder=demo_encoder)
    texts = [f"a drawing number {i}" for i in range(6)]
    results = await asyncio.gather(*(embed.aget_text_embedding(t) for t in texts))
    for text, vector in zip(texts, results, strict=True):
        np.testing.assert_allclose(vector, embed.get_text_embedding(text), atol=1e-5)


# -- image inputs -----------------------------------------------------------------------


def test_every_image_kind_gives_the_same_vector(demo_encoder: Any, png: Path) -> None:
    embed = CLIPMultiModalEmbedding(encoder=demo_encoder)
    data = png.read_bytes()
    b64 = base64.b64encode(data).decode()
    buffer = BytesIO(data)
    buffer.seek(10)  # a BytesIO someone already read from still gives the whole image
    kinds: list[Any] = [
        str(png),
        png,
        buffer,
        data,
        Image.open(png),
        f"data:image/png;base64,{b64}",
        ImageNode(image=b64),
        ImageNode(image_path=str(png)),
        ImageNode(image_url=png.as_uri()),
        ImageNode(metadata={"file_path": str(png)}),
    ]
    vectors = embed.get_image_embedding_batch(kinds)
    for kind, vector in zip(kinds, vectors, strict=True):
        np.testing.assert_allclose(vector, vectors[0], atol=1e-5, err_msg=type(kind).__name__)


@pytest.fixture
def served_png(png: Path) -> Iterator[str]:
    """The PNG at an http:// URL, from a real server on loopback."""
    import functools
    import http.server

    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(png.parent))
    handler.log_message = lambda *_: None  # type: ignore[attr-defined]
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/{png.name}"
    finally:
        server.shutdown()
        server.server_close()


def test_url_strings_are_fetched(demo_encoder: Any, png: Path, served_png: str) -> None:
    embed = CLIPMultiModalEmbedding(encoder=demo_encoder)
    expected = embed.get_image_embedding(str(png))
    np.testing.assert_allclose(embed.get_image_embedding(served_png), expected, atol=1e-5)
    node = ImageNode(image_url=served_png)
    np.testing.assert_allclose(embed.get_image_embedding(node), expected, atol=1e-5)


def test_image_node_precedence(png: Path) -> None:
    node = ImageNode(image_path=str(png), image_url="https://example.com/x.png")
    assert image_node_to_input(node) == str(png)
    assert image_node_to_input(ImageNode(image_url="https://example.com/x.png")) == (
        "https://example.com/x.png"
    )
    assert to_image_input(BytesIO(b"abc")) == b"abc"


def test_image_node_with_bad_base64_names_the_node() -> None:
    node = ImageNode(id_="node-7", image="not base64 at all!")
    with pytest.raises(ImageLoadError, match=r"node-7.*base64"):
        image_node_to_input(node)


def test_image_node_without_image_names_the_fix() -> None:
    with pytest.raises(ImageLoadError, match="image_path or image_url"):
        image_node_to_input(ImageNode(id_="empty", text="caption only"))


def test_unreadable_image_raises_naming_it(tmp_path: Path, demo_encoder: Any) -> None:
    bad = tmp_path / "broken.png"
    bad.write_bytes(b"not a png")
    embed = CLIPMultiModalEmbedding(encoder=demo_encoder)
    with pytest.raises(ImageLoadError, match=r"broken\.png"):
        embed.get_image_embedding(str(bad))


def test_text_and_image_share_one_space(demo_encoder: Any, demo_images_dir: Path) -> None:
    """Cross-modal sanity on the real model: a digit's caption is closer to that digit."""
    embed = CLIPMultiModalEmbedding(encoder=demo_encoder)
    seven = next((demo_images_dir / "digits").glob("seven-*.png"))
    circle = next((demo_images_dir / "shapes").glob("*-circle-*.png"))
    images = np.array(embed.get_image_embedding_batch([str(seven), str(circle)]))
    query = np.array(embed.get_query_embedding("a handwritten seven"))
    assert images[0] @ query > images[1] @ query


def test_fields_are_one_model_spec() -> None:
    """The fields build the core's `ModelSpec`, the one every entry point builds (see the
    core's tests/test_model_spec.py), whether given or read off an encoder handed in."""
    from clip_multimodal import CLIPEncoder, InvalidModelSpecError
    from clip_multimodal.models import DEMO_MODEL_NAME, ModelSpec

    spec = ModelSpec(DEMO_MODEL_NAME, None, device="cpu", precision="fp32", batch_size=8)
    fields = {"device": "cpu", "precision": "fp32", "embed_batch_size": 8}
    by_fields = CLIPMultiModalEmbedding(model_name=DEMO_MODEL_NAME, **fields)
    by_encoder = CLIPMultiModalEmbedding(encoder=CLIPEncoder.from_spec(spec))
    assert by_fields.spec == by_encoder.spec == spec
    assert by_fields.encoder.spec == spec  # type: ignore[attr-defined]
    assert by_fields.pretrained is None  # the demo alias names its weights
    with pytest.raises(InvalidModelSpecError, match="model"):
        CLIPMultiModalEmbedding(model_name="")


def test_clip_embeddings_model_name_means_openai_weights(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`ClipEmbedding(model_name="ViT-B/32")` users get OpenAI's weights, as clip.load gives."""
    import huggingface_hub.constants

    from clip_multimodal.errors import ModelNotAvailableError

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "hf"))
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")  # resolution only: no download
    with pytest.raises(ModelNotAvailableError, match="ViT-B-32 / openai"):
        CLIPMultiModalEmbedding(model_name="ViT-B/32", device="cpu")
