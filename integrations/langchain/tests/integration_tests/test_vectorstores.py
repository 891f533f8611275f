"""CLIPChroma: LangChain's standard vector-store suite on real Chroma (embedded and server),
then images on the real demo model."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from langchain_core.vectorstores import VectorStore
from langchain_tests.integration_tests import VectorStoreIntegrationTests

from langchain_clip_multimodal import CLIPChroma


class TestCLIPChromaStandard(VectorStoreIntegrationTests):
    @pytest.fixture
    def vectorstore(self, chroma_client: Any) -> Iterator[VectorStore]:
        name = f"lc-std-{uuid.uuid4().hex[:12]}"
        yield CLIPChroma(name, self.get_embeddings(), client=chroma_client)
        chroma_client.delete_collection(name)
