"""Fixtures shared by the tests of the three LlamaIndex distributions (embeddings/,
retrievers/, readers/) and of them together (tests/); the root conftest supplies the model
and Chroma.

`tests/contracts.py` is loaded once under the unique module name `llama_index_clip_contracts`,
so the test modules can subclass its contract classes without these folders being packages
(pytest runs with --import-mode=importlib, and each distribution has its own tests folder).
"""

from __future__ import annotations

import importlib.util
import shutil
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest


def _load_contracts() -> None:
    name = "llama_index_clip_contracts"
    if name in sys.modules:
        return
    spec = importlib.util.spec_from_file_location(
        name, Path(__file__).parent / "tests" / "contracts.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)


_load_contracts()

#: Short texts for the mixed folder: each under CLIP's 77 tokens with its file_path metadata.
NOTES = {
    "digits-note.txt": "Handwritten digits were scanned at eight by eight pixels.",
    "animals-note.txt": "The animal pictures are black silhouettes on white paper.",
}


@pytest.fixture(scope="session")
def mixed_dir(demo_images_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The demo images (shapes/, digits/, animals/) plus a few short .txt notes."""
    out = tmp_path_factory.mktemp("mixed") / "library"
    shutil.copytree(demo_images_dir, out)
    for name, text in NOTES.items():
        (out / name).write_text(text, encoding="utf-8")
    return out


@pytest.fixture(scope="module", params=["embedded", "http"])
def module_client(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Any]:
    """A Chroma client per module, embedded (on disk) and over HTTP (a real server)."""
    import chromadb

    if request.param == "embedded":
        path = tmp_path_factory.mktemp("chroma-embedded")
        yield chromadb.PersistentClient(path=str(path))
    else:
        host, port = request.getfixturevalue("chroma_server")
        yield chromadb.HttpClient(host=host, port=port)


def unique_name(prefix: str) -> str:
    """A collection name no other test (or run against the shared server) uses."""
    return f"{prefix}-{uuid.uuid4().hex[:12]}"


@pytest.fixture
def new_name() -> Any:
    """Makes unique collection names: `new_name("images")`."""
    return unique_name
