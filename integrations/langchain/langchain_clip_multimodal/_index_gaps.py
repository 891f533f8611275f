"""Stopgaps for two things `ImageIndex` does not do yet, on its own collection.

A LangChain vector store must store text documents (with their text, replacing a record of
the same id) and give the text back with every hit. `ImageIndex` stores image records
(`add_embeddings` tags them modality="image" and leaves existing ids as they are), and its
hits and records carry no document text. Each function here names the core API that would
replace it; the metadata mapping itself is the core's (`merge_metadata`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from clip_multimodal.index import ImageIndex
from clip_multimodal.index._records import merge_metadata
from langchain_clip_multimodal._documents import TEXT

__all__ = ["stored_texts", "upsert_texts"]


def upsert_texts(
    index: ImageIndex,
    ids: Sequence[str],
    vectors: Sequence[Sequence[float]],
    texts: Sequence[str],
    metadatas: Sequence[Mapping[str, Any] | None],
) -> None:
    """Store text records (modality="text"), replacing records with the same ids.

    To be replaced by `ImageIndex.add_embeddings(..., modality="text", replace=True)`.
    """
    array = np.asarray(vectors, dtype=np.float32)
    if array.ndim != 2 or array.shape[1] != index.encoder.dim:
        raise ValueError(
            f"expected vectors of dim {index.encoder.dim} from model "
            f"{index.encoder.model_id}, got shape {array.shape}"
        )
    array /= np.maximum(np.linalg.norm(array, axis=1, keepdims=True), 1e-12)
    metas = [merge_metadata(m, {"modality": TEXT}) for m in metadatas]
    step = max(1, int(index.client.get_max_batch_size()))
    for start in range(0, len(ids), step):
        end = start + step
        index.collection.upsert(
            ids=list(ids[start:end]),
            embeddings=array[start:end],
            metadatas=metas[start:end],  # type: ignore[arg-type]
            documents=list(texts[start:end]),
        )


def stored_texts(index: ImageIndex, ids: Sequence[str]) -> dict[str, str | None]:
    """The document text stored with each record (None where it has none).

    To be replaced by a `document` field on `SearchHit` and `IndexRecord`.
    """
    if not ids:
        return {}
    got = index.collection.get(ids=list(dict.fromkeys(ids)), include=["documents"])
    found = got.get("documents")
    docs: list[str | None] = list(found) if found else [None] * len(got["ids"])
    return dict(zip(got["ids"], docs, strict=True))
