"""Collection names are checked against Chroma's rule before anything loads or is created."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from clip_multimodal.errors import InvalidCollectionNameError
from clip_multimodal.index import ImageIndex, check_collection_name
from clip_multimodal.testing import FakeEncoder

BAD = ["t2", "", "ab", "a" * 513, "_ab", "ab_", "-ab", "a..b", "a b", "caf\u00e9", "1.2.3.4", "x/y"]
GOOD = ["abc", "t22", "a" * 512, "my-photos", "my_photos.v2", "a.b", "256.1.1.1", "1.2.3"]


@pytest.mark.parametrize("name", BAD)
def test_names_chroma_refuses_are_refused_with_the_rule(name: str) -> None:
    with pytest.raises(InvalidCollectionNameError, match="3 to 512 characters") as info:
        check_collection_name(name)
    assert repr(name)[:60] in str(info.value)
    assert isinstance(info.value, ValueError)


@pytest.mark.parametrize("name", GOOD)
def test_names_chroma_accepts_pass(name: str) -> None:
    assert check_collection_name(name) == name


def test_the_rule_agrees_with_chroma(tmp_path: Path) -> None:
    import chromadb

    client = chromadb.PersistentClient(str(tmp_path))
    for name in BAD + GOOD:
        try:
            client.create_collection(name)
            accepted = True
        except Exception:
            accepted = False
        assert accepted == (name in GOOD), name


def test_image_index_checks_the_name_before_touching_the_store(tmp_path: Path) -> None:
    where = tmp_path / "never"
    with pytest.raises(InvalidCollectionNameError, match="'t2'"):
        ImageIndex(FakeEncoder(), "t2", where)
    with pytest.raises(InvalidCollectionNameError, match="'t2'"):
        ImageIndex.open_read_only(FakeEncoder(), "t2", where)
    assert not where.exists()


def test_the_cli_refuses_a_bad_name_fast_without_importing_torch(tmp_path: Path) -> None:
    script = f"""
import contextlib, io, json, sys, time
from clip_multimodal.cli import main
results = []
for argv in (["search", "a cat"], ["index", {str(tmp_path)!r}], ["info"], ["serve"]):
    err = io.StringIO()
    start = time.perf_counter()
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(err):
        code = main([*argv, "--collection", "t2", "--data-dir", {str(tmp_path / "d")!r}])
    results.append([code, err.getvalue(), time.perf_counter() - start])
print(json.dumps({{"results": results, "torch": "torch" in sys.modules}}))
"""
    out = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=True, timeout=60
    )
    report: dict[str, Any] = json.loads(out.stdout)
    assert report["torch"] is False
    for code, err, seconds in report["results"]:
        assert code == 2, err
        assert "collection name 't2'" in err and "3 to 512 characters" in err
        assert err.count("\n") == 1
        assert seconds < 2.0
    assert not (tmp_path / "d").exists()
