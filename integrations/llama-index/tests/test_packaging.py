"""The three distributions' shape, as LlamaHub lays them out: one per namespace, each a PEP 420
namespace portion of `llama_index` with its own pyproject, README and `[tool.llamahub]`."""

from __future__ import annotations

import importlib
from pathlib import Path

import pytest
import tomllib

ROOT = Path(__file__).resolve().parents[1]
#: The folder of each distribution, named for the namespace it adds to.
KINDS = ["embeddings", "retrievers", "readers"]
PACKAGES = {
    "llama_index.embeddings.clip_multimodal": [
        "CLIPMultiModalEmbedding",
        "image_node_to_input",
        "to_image_input",
    ],
    "llama_index.retrievers.clip_multimodal": [
        "CLIPImageRetriever",
        "TextImageFusionRetriever",
        "to_chroma_where",
    ],
    "llama_index.readers.clip_multimodal": [
        "IMAGE_EXTENSIONS",
        "TEXT_EXTENSIONS",
        "FolderReader",
        "ImagePathReader",
        "content_node_id",
        "image_file_extractor",
    ],
}


def _pyproject(kind: str) -> dict:
    return tomllib.loads((ROOT / kind / "pyproject.toml").read_text(encoding="utf-8"))


@pytest.mark.parametrize("kind", KINDS)
def test_no_init_above_the_packages(kind: str) -> None:
    """An __init__.py here would shadow llama-index-core's `llama_index` namespace."""
    for folder in (ROOT / kind / "llama_index", ROOT / kind / "llama_index" / kind):
        assert not (folder / "__init__.py").exists(), folder


@pytest.mark.parametrize("kind", KINDS)
def test_one_namespace_per_distribution(kind: str) -> None:
    assert [p.name for p in (ROOT / kind / "llama_index").iterdir()] == [kind]
    assert (ROOT / kind / "README.md").is_file() and (ROOT / kind / "LICENSE").is_file()
    assert any((ROOT / kind / "tests").glob(f"test_{kind}_*.py"))


def test_core_and_ours_share_the_namespace() -> None:
    import llama_index
    import llama_index.core
    import llama_index.vector_stores.chroma

    portions = [Path(p).resolve() for p in llama_index.__path__]
    ours = [(ROOT / kind / "llama_index").resolve() for kind in KINDS]
    assert set(ours) <= set(portions)
    assert any((p / "core").is_dir() for p in portions if p not in ours)
    assert llama_index.core.__file__ and "site-packages" in llama_index.core.__file__


@pytest.mark.parametrize(("module", "names"), PACKAGES.items())
def test_public_names(module: str, names: list[str]) -> None:
    imported = importlib.import_module(module)
    assert sorted(imported.__all__) == sorted(names)
    for name in names:
        assert getattr(imported, name) is not None
    assert (Path(str(imported.__file__)).parent / "py.typed").is_file()


@pytest.mark.parametrize("kind", KINDS)
def test_pyproject(kind: str) -> None:
    project = _pyproject(kind)
    assert project["project"]["name"] == f"llama-index-{kind}-clip-multimodal"
    deps = project["project"]["dependencies"]
    assert any(d.startswith("clip-multimodal>=") for d in deps)
    assert any(d.startswith("llama-index-core>=0.12") for d in deps)
    assert project["project"]["license-files"] == ["LICENSE"]
    assert project["tool"]["hatch"]["build"]["targets"]["wheel"]["packages"] == ["llama_index"]


def test_extras_and_the_retrievers_dependency() -> None:
    assert _pyproject("embeddings")["project"]["optional-dependencies"]["chroma"] == [
        "llama-index-vector-stores-chroma>=0.4"
    ]
    deps = _pyproject("retrievers")["project"]["dependencies"]
    assert "llama-index-embeddings-clip-multimodal>=0.1" in deps  # it reuses the image inputs


@pytest.mark.parametrize("kind", KINDS)
def test_llamahub_metadata_names_real_classes(kind: str) -> None:
    hub = _pyproject(kind)["tool"]["llamahub"]
    assert hub["import_path"] == f"llama_index.{kind}.clip_multimodal"
    assert set(hub) == {"contains_example", "import_path", "class_authors"}
    exported = set(PACKAGES[hub["import_path"]])
    assert hub["class_authors"] and set(hub["class_authors"]) <= exported
