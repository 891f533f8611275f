"""`CLIPEmbeddings` takes the demo model's alias, the offline way to try the package."""

from __future__ import annotations

from typing import Any

import numpy as np
from langchain_clip_multimodal import CLIPEmbeddings

from clip_multimodal.models import DEMO_MODEL_NAME

QUERIES = ["a red circle", "a handwritten seven", "a silhouette of a cat"]


def test_embeddings_accept_the_demo_alias(demo_encoder: Any) -> None:
    embeddings = CLIPEmbeddings(model_name=DEMO_MODEL_NAME, device="cpu")
    got = np.asarray(embeddings.embed_documents(QUERIES))
    np.testing.assert_allclose(got, demo_encoder.embed_texts(QUERIES), atol=1e-5)
