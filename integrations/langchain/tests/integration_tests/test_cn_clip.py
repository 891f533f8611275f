"""CLIPEmbeddings on a Chinese-CLIP checkpoint named as users name it, queried in Chinese."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from langchain_clip_multimodal import CLIPEmbeddings


def test_chinese_queries_equal_the_core_encoder(
    cn_clip_encoder: Any, cn_clip_checkpoint: Path
) -> None:
    embeddings = CLIPEmbeddings(
        model_name="cn-clip:RN50", pretrained=str(cn_clip_checkpoint), device="cpu"
    )
    texts = ["一只猫的剪影", "手写的数字七"]
    expected = cn_clip_encoder.embed_texts(texts)
    np.testing.assert_allclose(embeddings.embed_documents(texts), expected, atol=1e-6)
    query = embeddings.embed_query("一个红色的小圆形")
    assert all(type(x) is float for x in query)
    np.testing.assert_allclose(
        query, cn_clip_encoder.embed_texts(["一个红色的小圆形"])[0], atol=1e-6
    )
    assert embeddings.model_id == cn_clip_encoder.model_id
