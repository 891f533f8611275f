"""The CLI's answers when the user asked for something that is not there, and how early.

Missing stores and collections fail without creating anything and repeat the user's flags;
bad inputs fail before the model loads; small wording: plurals, suggestions, the demo alias.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from clip_multimodal.cli import main
from tests.server_helpers import png_bytes


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def _tree(root: Path) -> list[str]:
    """Every path under root. (Chroma's own database is rewritten when a client opens it,
    even to read, so its bytes are not compared; its collections are.)"""
    return sorted(str(path.relative_to(root)) for path in root.rglob("*"))


def _collections(data: Path) -> list[str]:
    import chromadb

    client = chromadb.PersistentClient(str(data / "chroma"))
    return sorted(c.name for c in client.list_collections())


def _cli(*argv: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "CLIP_MULTIMODAL_DATA_DIR"}
    return subprocess.run(
        [sys.executable, "-m", "clip_multimodal.cli", *argv],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
    )


@pytest.fixture(scope="module")
def other_collection(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A data dir holding one indexed collection, 'others'."""
    data = tmp_path_factory.mktemp("cli-errors")
    folder = data.parent / f"{data.name}-images"
    folder.mkdir()
    (folder / "red.png").write_bytes(png_bytes((200, 10, 10)))
    argv = ["index", str(folder), "--no-progress", "--data-dir", str(data)]
    assert main([*argv, "--collection", "others", "--device", "cpu"]) == 0
    return data


# -- missing stores and collections --------------------------------------------------------


@pytest.mark.parametrize("command", ["search", "info"])
def test_a_missing_data_dir_fails_and_creates_nothing(command: str, tmp_path: Path) -> None:
    data = tmp_path / "D"
    query = ["a cat"] if command == "search" else []
    out = _cli(command, *query, "--data-dir", str(data), "--collection", "nope", "--device", "cpu")
    assert out.returncode == 1, out.stderr
    assert "error: " in out.stderr
    assert str(data) in out.stderr and "'nope'" in out.stderr
    # The hint repeats the user's own flags.
    assert f"clip-multimodal index DIR --data-dir {data} --collection nope" in out.stderr
    assert not data.exists()
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("command", ["search", "info"])
def test_a_missing_collection_fails_and_changes_nothing(
    command: str, other_collection: Path
) -> None:
    before = _tree(other_collection)
    argv = ["--data-dir", str(other_collection), "--collection", "nope", "--device", "cpu"]
    out = _cli(command, *(["a cat"] if command == "search" else []), *argv)
    assert out.returncode == 1, out.stderr
    assert "no collection 'nope'" in out.stderr and str(other_collection) in out.stderr
    assert f"--data-dir {other_collection} --collection nope" in out.stderr
    assert _tree(other_collection) == before
    assert _collections(other_collection) == ["others"]


def test_search_fails_on_a_missing_collection_before_the_model_loads(
    capsys: pytest.CaptureFixture[str], other_collection: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import clip_multimodal.cli._commands as commands

    def no_model(*_: Any) -> Any:
        raise AssertionError("the model was loaded")

    monkeypatch.setattr(commands, "open_encoder", no_model)
    argv = ["--data-dir", str(other_collection), "--collection", "nope"]
    code, out, err = run(capsys, "search", "a cat", *argv)
    assert code == 1 and out == "" and "no collection 'nope'" in err


def test_search_still_finds_the_existing_collection(
    capsys: pytest.CaptureFixture[str], other_collection: Path
) -> None:
    argv = ["--data-dir", str(other_collection), "--collection", "others", "--device", "cpu"]
    code, out, _ = run(capsys, "search", "a red square", "-k", "1", *argv)
    assert code == 0 and out.strip().endswith("red.png")
    code, out, _ = run(capsys, "info", *argv)
    assert code == 0 and "others: 1 image," in out


def test_a_missing_collection_on_a_chroma_server_names_the_server(
    capsys: pytest.CaptureFixture[str], chroma_server: tuple[str, int]
) -> None:
    host, port = chroma_server
    code, _, err = run(
        capsys, "search", "a cat", "--host", host, "--port", str(port), "--collection", "nope"
    )
    assert code == 1 and f"{host}:{port}" in err and "'nope'" in err
    assert f"--host {host} --port {port} --collection nope" in err


# -- inputs checked before the model loads -------------------------------------------------


def test_missing_and_folder_images_fail_before_the_model_loads(
    capsys: pytest.CaptureFixture[str],
    other_collection: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import clip_multimodal.cli._commands as commands

    def no_model(*_: Any) -> Any:
        raise AssertionError("the model was loaded")

    monkeypatch.setattr(commands, "open_encoder", no_model)
    argv = ["--data-dir", str(other_collection), "--collection", "others"]
    for image, reason in ((tmp_path / "missing.png", "no such file"), (tmp_path, "directory")):
        code, out, err = run(capsys, "search", "--image", str(image), *argv)
        assert code == 1 and out == "" and reason in err and str(image) in err
        code, out, err = run(capsys, "classify", str(image), "--labels", "cat,dog")
        assert code == 1 and reason in err and str(image) in err


def test_a_text_that_looks_like_a_path_is_searched_with_a_note(
    capsys: pytest.CaptureFixture[str], other_collection: Path
) -> None:
    argv = ["--data-dir", str(other_collection), "--collection", "others", "--device", "cpu"]
    code, out, err = run(capsys, "search", "./red.png", *argv)
    assert code == 0 and out.strip()
    assert "searching for the text './red.png'" in err and "--image ./red.png" in err
    code, out, err = run(capsys, "search", "a black/white cat", *argv)
    assert code == 0 and err == ""


# -- index ---------------------------------------------------------------------------------


def test_an_empty_folder_says_no_images_were_found(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    folder = tmp_path / "empty"
    folder.mkdir()
    (folder / "notes.txt").write_text("not an image")
    code, _, err = run(capsys, "index", str(folder), "--no-progress", "--data-dir", str(tmp_path))
    assert code == 1
    assert f"no image files found under {folder}" in err
    assert "*.jpg" in err and "*.png" in err and "--pattern" in err


def test_counts_are_pluralised(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    folder = tmp_path / "imgs"
    folder.mkdir()
    (folder / "good.png").write_bytes(png_bytes((10, 200, 10)))
    (folder / "bad.png").write_bytes(b"\x89PNG and no more")
    code, out, err = run(capsys, "index", str(folder), "--no-progress", "--data-dir", str(tmp_path))
    assert code == 1
    assert ": 1 image\n" in out and "1 images" not in out
    assert "error: 1 image could not be indexed" in err


# -- models, names, suggestions ------------------------------------------------------------


def test_the_demo_model_name_is_accepted(
    capsys: pytest.CaptureFixture[str], other_collection: Path
) -> None:
    argv = ["--data-dir", str(other_collection), "--collection", "others", "--device", "cpu"]
    code, out, err = run(capsys, "search", "a red square", "--model", "clip-multimodal-demo", *argv)
    assert code == 0, err
    code, out, err = run(capsys, "info", "--json", "--model", "clip-multimodal-demo", *argv)
    assert code == 0 and json.loads(out)["collection"]["count"] == 1


def test_a_missing_local_dir_says_it_does_not_exist(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    from clip_multimodal.errors import ModelNotAvailableError
    from clip_multimodal.models import resolve_model

    with pytest.raises(ModelNotAvailableError, match="does not exist"):
        resolve_model(f"local-dir:{tmp_path / 'nope'}", None)
    (tmp_path / "file").write_text("x")
    with pytest.raises(ModelNotAvailableError, match="not a folder"):
        resolve_model(f"local-dir:{tmp_path / 'file'}", None)
    with pytest.raises(ModelNotAvailableError, match=r"has no open_clip_config\.json"):
        resolve_model(f"local-dir:{tmp_path}", None)


def test_a_misspelled_command_gets_a_suggestion(capsys: pytest.CaptureFixture[str]) -> None:
    start = time.perf_counter()
    code, out, err = run(capsys, "serch", "a cat")
    assert code == 2 and out == ""
    assert "did you mean 'search'?" in err
    assert time.perf_counter() - start < 2.0
    code, _, err = run(capsys, "xyzzy")
    assert code == 2 and "did you mean" not in err and "invalid choice" in err
