"""The distribution's shape: a PEP 420 namespace portion of `llama_index`, with LlamaHub metadata."""

from __future__ import annotations

import importlib
from pathlib import Path

import pytest
import tomllib

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = {
    "llama_index.embeddings.clip_multimodal": [
        "CLIPMultiModalEmbedding",
        "image_node_to_input",
        "to_image_input",
    ],
    "llama_index.retrievers.clip_multimodal": ["CLIPImageRetriever", "to_chroma_where"],
    "llama_index.readers.clip_multimodal": [
        "IMAGE_EXTENSIONS",
        "TEXT_EXTENSIONS",
        "FolderReader",
        "ImagePathReader",
        "content_node_id",
        "image_file_extractor",
    ],
}


def _pyproject() -> dict:
    return tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))


@pytest.mark.parametrize("folder", ["", "embeddings", "retrievers", "readers"])
def test_no_init_above_the_packages(folder: str) -> None:
    """An __init__.py here would shadow llama-index-core's `llama_index` namespace."""
    assert not (ROOT / "llama_index" / folder / "__init__.py").exists()


def test_core_and_ours_share_the_namespace() -> None:
    import llama_index
    import llama_index.core
    import llama_index.vector_stores.chroma

    portions = [Path(p).resolve() for p in llama_index.__path__]
    assert (ROOT / "llama_index").resolve() in portions
    assert any((p / "core").is_dir() for p in portions if p != (ROOT / "llama_index").resolve())
    assert llama_index.core.__file__ and "site-packages" in llama_index.core.__file__


@pytest.mark.parametrize(("module", "names"), PACKAGES.items())
def test_public_names(module: str, names: list[str]) -> None:
    imported = importlib.import_module(module)
    assert sorted(imported.__all__) == sorted(names)
    for name in names:
        assert getattr(imported, name) is not None
    assert (Path(str(imported.__file__)).parent / "py.typed").is_file()


def test_pyproject() -> None:
    project = _pyproject()
    assert project["project"]["name"] == "llama-index-clip-multimodal"
    deps = project["project"]["dependencies"]
    assert any(d.startswith("clip-multimodal") for d in deps)
    assert any(d.startswith("llama-index-core>=0.12") for d in deps)
    assert project["project"]["optional-dependencies"]["chroma"] == [
        "llama-index-vector-stores-chroma>=0.4"
    ]
    assert project["tool"]["hatch"]["build"]["targets"]["wheel"]["packages"] == ["llama_index"]


def test_llamahub_metadata_names_real_classes() -> None:
    hub = _pyproject()["tool"]["llamahub"]
    importlib.import_module(hub["import_path"])
    exported = {name for names in PACKAGES.values() for name in names}
    assert set(hub["class_authors"]) <= exported
    assert "CLIPMultiModalEmbedding" in hub["class_authors"]
    assert "CLIPImageRetriever" in hub["class_authors"]
