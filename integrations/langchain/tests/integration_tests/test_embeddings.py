"""CLIPEmbeddings on the real demo model: the standard suite, and the right answers."""

from __future__ import annotations

from typing import Any

import numpy as np
from langchain_clip_multimodal import CLIPEmbeddings
from langchain_tests.integration_tests import EmbeddingsIntegrationTests

from clip_multimodal.models import DEMO_MODEL


class TestCLIPEmbeddingsStandard(EmbeddingsIntegrationTests):
    @property
    def embeddings_class(self) -> type[CLIPEmbeddings]:
        return CLIPEmbeddings

    @property
    def embedding_model_params(self) -> dict[str, str]:
        return {"model_name": DEMO_MODEL, "device": "cpu"}


def test_matches_the_core_encoder(
    clip_embeddings: CLIPEmbeddings, demo_encoder: Any, demo_image: Any
) -> None:
    paths = [str(demo_image("digits", "seven")), str(demo_image("shapes", "red-circle-small"))]
    np.testing.assert_allclose(
        clip_embeddings.embed_image(paths), demo_encoder.embed_images(paths), atol=1e-6
    )
    texts = ["a handwritten seven", "a small red circle"]
    np.testing.assert_allclose(
        clip_embeddings.embed_documents(texts), demo_encoder.embed_texts(texts), atol=1e-6
    )
    assert clip_embeddings.model_id == demo_encoder.model_id


def test_a_text_is_closest_to_the_image_it_describes(
    clip_embeddings: CLIPEmbeddings, demo_image: Any
) -> None:
    kinds = [("shapes", "blue-cross-large"), ("shapes", "yellow-star-large"), ("animals", "zebra")]
    captions = ["a large blue cross", "a large yellow star", "a silhouette of a zebra"]
    images = np.asarray(clip_embeddings.embed_image([str(demo_image(*kind)) for kind in kinds]))
    texts = np.asarray(clip_embeddings.embed_documents(captions))
    assert (texts @ images.T).argmax(axis=1).tolist() == [0, 1, 2]


def test_loading_from_the_spec_gives_the_same_vectors(
    clip_embeddings: CLIPEmbeddings, demo_image: Any
) -> None:
    loaded = CLIPEmbeddings(model_name=DEMO_MODEL, device="cpu", batch_size=2)
    path = str(demo_image("animals", "cat"))
    np.testing.assert_allclose(
        loaded.embed_image([path]), clip_embeddings.embed_image([path]), atol=1e-5
    )
    assert loaded.client.batch_size == 2  # type: ignore[attr-defined]
