"""`CLIPMultiModalEmbedding` takes the demo model's alias, the offline way to try the package."""

from __future__ import annotations

from typing import Any

import numpy as np
from llama_index.embeddings.clip_multimodal import CLIPMultiModalEmbedding

from clip_multimodal.models import DEMO_MODEL_NAME

QUERIES = ["a red circle", "a handwritten seven", "a silhouette of a cat"]


def test_embedding_accepts_the_demo_alias(demo_encoder: Any) -> None:
    embed = CLIPMultiModalEmbedding(model_name=DEMO_MODEL_NAME, device="cpu")
    got = np.asarray(embed.get_text_embedding_batch(QUERIES))
    np.testing.assert_allclose(got, demo_encoder.embed_texts(QUERIES), atol=1e-5)
