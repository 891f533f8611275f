"""Kill an indexing run with SIGKILL half-way, then re-run: consistent, complete, no duplicates."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from clip_multimodal.index import ImageIndex
from clip_multimodal.index._sync import file_id
from clip_multimodal.testing import FakeEncoder

N_FILES = 100

# A slow fake model (0.1 s per chunk of 4), so the kill lands mid-run.
_CHILD = """
import sys, time
from clip_multimodal.index import ImageIndex
from clip_multimodal.testing import FakeEncoder

class SlowEncoder(FakeEncoder):
    def try_embed_images(self, images):
        time.sleep(0.1)
        return super().try_embed_images(images)

kind, target, name, folder = sys.argv[1:5]
if kind == "embedded":
    index = ImageIndex(SlowEncoder(), name, path=target, chunk_size=4)
else:
    host, port = target.rsplit(":", 1)
    index = ImageIndex(SlowEncoder(), name, host=host, port=int(port), chunk_size=4)
index._write_every_s = 0.2  # write often, so the kill lands between writes
index.index_folder(folder, progress=False, callback=lambda done, total: print(done, flush=True))
print("finished", flush=True)
"""


def _run_and_kill(args: list[str], after: int) -> None:
    """Start the child and SIGKILL it once it reports `after` files done."""
    proc = subprocess.Popen(
        [sys.executable, "-c", _CHILD, *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=Path(__file__).resolve().parent.parent,
    )
    assert proc.stdout is not None
    try:
        for line in proc.stdout:
            assert line.strip() != "finished", "the run ended before it could be killed"
            if int(line) >= after:
                os.kill(proc.pid, signal.SIGKILL)
                break
        else:
            pytest.fail(f"the child exited early: {proc.stderr.read() if proc.stderr else ''}")
    finally:
        proc.wait(timeout=60)
        if proc.stdout:
            proc.stdout.close()
        if proc.stderr:
            proc.stderr.close()
    assert proc.returncode == -signal.SIGKILL


def _check_complete_records(index: ImageIndex, folder: Path) -> int:
    """Every stored record is whole: a file that exists, its hash, and its exact vector."""
    got = index.collection.get(include=["metadatas", "embeddings"])
    uris = [m["uri"] for m in got["metadatas"]]
    assert len(uris) == len(set(uris)), "duplicate records"
    expected = FakeEncoder()
    for id_, meta, vector in zip(got["ids"], got["metadatas"], got["embeddings"], strict=True):
        path = Path(meta["uri"])
        assert path.parent == folder and id_ == file_id(str(path))
        assert meta["size"] == path.stat().st_size
        assert np.allclose(vector, expected.embed_images([path])[0], atol=1e-5)
    return len(uris)


def test_a_killed_run_leaves_whole_records_and_the_rerun_finishes(
    chroma_client_kind: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    folder = tmp_path / "imgs"
    folder.mkdir()
    rng = np.random.default_rng(0)
    for i in range(N_FILES):
        pixels = rng.integers(0, 256, (12, 12, 3), dtype=np.uint8)
        Image.fromarray(pixels).save(folder / f"{i:03d}.png")
    name = f"crash-{uuid.uuid4().hex[:10]}"
    if chroma_client_kind == "embedded":
        target = str(tmp_path / "db")
        reopen: dict[str, Any] = {"path": target}
    else:
        host, port = request.getfixturevalue("chroma_server")
        target = f"{host}:{port}"
        reopen = {"host": host, "port": port}

    _run_and_kill([chroma_client_kind, target, name, str(folder)], after=N_FILES // 3)

    index = ImageIndex(FakeEncoder(), name, **reopen)
    stored = _check_complete_records(index, folder)
    assert 0 < stored < N_FILES

    report = index.index_folder(folder, progress=False)

    assert (report.added, report.unchanged, report.failed) == (N_FILES - stored, stored, [])
    assert report.embedded == N_FILES - stored  # the killed run's work is kept
    assert _check_complete_records(index, folder) == N_FILES
