"""FolderReader and ImagePathReader: image files as ImageDocuments by path, with content-hash
ids, on the demo images plus short notes (the `mixed_dir` fixture)."""

from __future__ import annotations

import hashlib
import re
import shutil
from pathlib import Path

import pytest
from llama_index.core import Document, SimpleDirectoryReader
from llama_index.core.schema import ImageDocument, MetadataMode
from llama_index.readers.clip_multimodal import FolderReader, content_node_id, image_file_extractor

from clip_multimodal.datasets import digit_query

NOTES = {"digits-note.txt", "animals-note.txt"}  # the notes conftest writes into mixed_dir

README = Path(__file__).resolve().parents[1] / "README.md"


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


# -- through SimpleDirectoryReader --------------------------------------------------------------


def test_reader_gives_image_documents_by_path(mixed_dir: Path) -> None:
    documents = SimpleDirectoryReader(
        str(mixed_dir), recursive=True, file_extractor=image_file_extractor()
    ).load_data()
    images = [d for d in documents if isinstance(d, ImageDocument)]
    texts = [d for d in documents if not isinstance(d, ImageDocument)]
    assert len(images) == len(list(mixed_dir.rglob("*.png")))
    assert len(texts) == len(list(mixed_dir.glob("*.txt")))
    for document in images:
        assert Path(str(document.image_path)).is_file()
        assert document.image is None  # no base64 copy of the file in the docstore
        assert document.metadata["file_path"] == document.image_path


# -- FolderReader ------------------------------------------------------------------------------


def test_folder_reader_reads_a_folder_under_a_hidden_one(tmp_path: Path, mixed_dir: Path) -> None:
    """`make demo` writes to .data/: the folder's own path may be hidden."""
    folder = tmp_path / ".data" / "demo-images"
    shutil.copytree(mixed_dir, folder)
    (folder / ".cache").mkdir()
    shutil.copy(next(folder.rglob("*.png")), folder / ".cache" / "thumb.png")
    (folder / ".hidden-note.txt").write_text("not a note", encoding="utf-8")
    documents = FolderReader().load_data(folder)
    images = [d for d in documents if isinstance(d, ImageDocument)]
    texts = [d for d in documents if not isinstance(d, ImageDocument)]
    assert len(images) == len(list(mixed_dir.rglob("*.png")))
    assert sorted(Path(d.metadata["file_path"]).name for d in texts) == sorted(NOTES)
    assert not any("/." in d.metadata["file_path"].split(".data", 1)[1] for d in documents)
    with pytest.raises(ValueError, match="No files found"):  # what SimpleDirectoryReader does
        SimpleDirectoryReader(str(folder), recursive=True).load_data()


def test_folder_reader_documents(mixed_dir: Path) -> None:
    documents = FolderReader().load_data(mixed_dir)
    for document in documents:
        path = Path(document.metadata["file_path"])
        assert document.id_ == _sha(path)
        if isinstance(document, ImageDocument):
            assert document.image_path == str(path) and document.image is None
        else:
            assert document.text == path.read_text(encoding="utf-8")
            embedded = document.get_content(metadata_mode=MetadataMode.EMBED)
            assert str(path) not in embedded  # CLIP's 77 tokens are for the note's text
    top = FolderReader(recursive=False).load_data(mixed_dir)
    assert {Path(d.metadata["file_path"]).suffix for d in top} == {".txt"}


def test_folder_reader_reads_identical_files_once(tmp_path: Path, mixed_dir: Path) -> None:
    """Identical files share a content id; Chroma refuses repeated ids in one add."""
    seven = next(mixed_dir.glob("digits/seven-*.png"))
    shutil.copy(seven, tmp_path / "a.png")
    shutil.copy(seven, tmp_path / "b.png")
    (tmp_path / "c.txt").write_text("a note", encoding="utf-8")
    documents = FolderReader().load_data(tmp_path)
    assert [Path(d.metadata["file_path"]).name for d in documents] == ["a.png", "c.txt"]


def test_folder_reader_errors(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="not a folder"):
        FolderReader().load_data(tmp_path / "missing")
    (tmp_path / "notes.pdf").write_bytes(b"%PDF")
    with pytest.raises(ValueError, match=r"no image or text files found under .*\.png"):
        FolderReader().load_data(tmp_path)


def test_image_path_reader_ids_are_content_hashes(mixed_dir: Path) -> None:
    documents = SimpleDirectoryReader(
        str(mixed_dir), recursive=True, file_extractor=image_file_extractor()
    ).load_data()
    images = [d for d in documents if isinstance(d, ImageDocument)]
    assert images and all(d.id_ == _sha(Path(str(d.image_path))) for d in images)


def test_content_node_id() -> None:
    document = Document(id_="abc", text="a note")
    assert [content_node_id(i, document) for i in range(3)] == ["abc", "abc-1", "abc-2"]


def test_readme_usage_runs_as_written(
    tmp_path: Path, mixed_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The README's first example, on a copy of the mixed folder as ./library."""
    match = re.search(r"## Usage\n.*?```python\n(.*?)```", README.read_text("utf-8"), re.DOTALL)
    assert match, "the README's Usage section has no python block"
    shutil.copytree(mixed_dir, tmp_path / "library")
    monkeypatch.chdir(tmp_path)
    namespace: dict[str, object] = {}
    exec(compile(match.group(1), str(README), "exec"), namespace)  # the README's own code
    documents = namespace["documents"]
    assert isinstance(documents, list)
    assert len(documents) == len(list(mixed_dir.rglob("*.png"))) + len(NOTES)
    assert all(d.id_ == _sha(Path(d.metadata["file_path"])) for d in documents)
    index = namespace["index"]
    hits = index.as_retriever(image_similarity_top_k=1).text_to_image_retrieve(  # type: ignore[attr-defined]
        digit_query("seven")
    )
    assert Path(hits[0].node.image_path).name.startswith("seven-")
