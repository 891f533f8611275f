"""CLIPChroma beside plain chromadb clients and `langchain_chroma.Chroma`, in one process,
in either order, as users run it: no telemetry variable in the environment.

Chroma keeps one system per path and one for every in-memory client of a process, and
refuses a second client there with other settings.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from langchain_chroma import Chroma
from langchain_clip_multimodal import CLIPChroma


@pytest.fixture(autouse=True)
def _as_users_run(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("ANONYMIZED_TELEMETRY", raising=False)


def _check(ours: CLIPChroma, theirs: Chroma) -> None:
    ours.add_texts(["ours"], ids=["o"])
    theirs.add_texts(["theirs"], ids=["t"])
    assert ours.similarity_search("ours", k=1)[0].id == "o"
    assert theirs.similarity_search("theirs", k=1)[0].id == "t"


@pytest.mark.parametrize("ours_first", [True, False], ids=["ours-first", "theirs-first"])
def test_on_one_folder_beside_langchain_chroma(
    clip_embeddings: Any, tmp_path: Path, ours_first: bool
) -> None:
    folder = str(tmp_path / "db")

    def ours() -> CLIPChroma:
        return CLIPChroma("ours", clip_embeddings, persist_directory=folder)

    def theirs() -> Chroma:
        return Chroma("theirs", clip_embeddings, persist_directory=folder)

    if ours_first:
        mine = ours()
        _check(mine, theirs())
    else:
        other = theirs()
        _check(ours(), other)


@pytest.mark.parametrize("ours_first", [True, False], ids=["ours-first", "theirs-first"])
def test_on_one_folder_beside_a_persistent_client(
    clip_embeddings: Any, tmp_path: Path, ours_first: bool
) -> None:
    import chromadb

    folder = str(tmp_path / "db")
    client = None if ours_first else chromadb.PersistentClient(folder)
    store = CLIPChroma("ours", clip_embeddings, persist_directory=folder)
    client = client or chromadb.PersistentClient(folder)
    store.add_texts(["ours"], ids=["o"])
    assert client.get_collection("ours").get(ids=["o"])["documents"] == ["ours"]


# In memory, the first client of the process fixes the settings: each order runs in a fresh
# process, with LangChain's fake embeddings (the path under test is the client, not the model).
_IN_MEMORY = """
import chromadb
from langchain_chroma import Chroma
from langchain_clip_multimodal import CLIPChroma
from langchain_core.embeddings import DeterministicFakeEmbedding

fake = DeterministicFakeEmbedding(size=8)
def theirs():
    if {theirs!r} == "EphemeralClient":
        return chromadb.EphemeralClient()
    return Chroma("theirs", fake)
first = theirs() if {theirs_first!r} else None
ours = CLIPChroma("ours", fake)
second = first or theirs()
ours.add_texts(["ours"], ids=["o"])
names = [c.name for c in chromadb.EphemeralClient().list_collections()]
print(ours.similarity_search("ours", k=1)[0].id, "ours" in names)
"""


@pytest.mark.parametrize("theirs", ["EphemeralClient", "langchain_chroma.Chroma"])
@pytest.mark.parametrize("theirs_first", [True, False], ids=["theirs-first", "ours-first"])
def test_in_memory_beside_the_users_clients(theirs: str, theirs_first: bool) -> None:
    script = _IN_MEMORY.format(theirs=theirs, theirs_first=theirs_first)
    env = {k: v for k, v in os.environ.items() if k != "ANONYMIZED_TELEMETRY"}
    out = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=180, env=env
    )
    assert out.returncode == 0, out.stderr[-3000:]
    assert out.stdout.split() == ["o", "True"]  # one in-memory Chroma, shared
