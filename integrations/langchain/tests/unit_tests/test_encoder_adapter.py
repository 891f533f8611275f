"""Any LangChain Embeddings as the core Encoder (texts only)."""

from __future__ import annotations

import numpy as np
import pytest
from langchain_clip_multimodal import CLIPEmbeddings
from langchain_clip_multimodal._encoder import EmbeddingsEncoder, encoder_for
from langchain_core.embeddings import DeterministicFakeEmbedding, Embeddings
from pydantic import BaseModel, SecretStr

from clip_multimodal.testing import FakeEncoder
from clip_multimodal.types import Encoder


class KeyedEmbeddings(BaseModel, Embeddings):
    model: str = "small"
    api_key: SecretStr = SecretStr("sk-secret")
    auth_token: str = "tok-secret"

    def embed_documents(self, texts: list[str]) -> list[list[float]]:
        return [[float(len(t)), 1.0, 0.0] for t in texts]

    def embed_query(self, text: str) -> list[float]:
        return self.embed_documents([text])[0]


def test_wraps_any_embeddings_as_a_normalized_text_encoder() -> None:
    fake = DeterministicFakeEmbedding(size=6)
    encoder = encoder_for(fake)
    assert isinstance(encoder, Encoder)
    assert encoder.model_id == "langchain:DeterministicFakeEmbedding(size=6)"
    assert encoder.dim == 6
    vectors = encoder.embed_texts(["foo", "bar"])
    raw = np.asarray(fake.embed_documents(["foo", "bar"]), dtype=np.float32)
    np.testing.assert_allclose(vectors, raw / np.linalg.norm(raw, axis=1, keepdims=True), rtol=1e-6)
    assert encoder.embed_texts([]).shape == (0, 6)


def test_model_id_tells_configurations_apart_and_leaves_out_secrets() -> None:
    model_id = EmbeddingsEncoder(KeyedEmbeddings()).model_id
    assert model_id == "langchain:KeyedEmbeddings(model='small')"
    assert EmbeddingsEncoder(KeyedEmbeddings(model="large")).model_id != model_id
    assert "secret" not in model_id


def test_refuses_images_and_names_the_fix() -> None:
    encoder = EmbeddingsEncoder(DeterministicFakeEmbedding(size=6))
    with pytest.raises(TypeError, match=r"CLIPEmbeddings"):
        encoder.embed_images(["a.png"])
    with pytest.raises(TypeError, match=r"CLIPEmbeddings"):
        encoder.try_embed_images(["a.png"])


def test_clip_embeddings_give_their_own_encoder(fake_encoder: FakeEncoder) -> None:
    assert encoder_for(CLIPEmbeddings(encoder=fake_encoder)) is fake_encoder
