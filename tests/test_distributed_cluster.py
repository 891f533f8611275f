"""`clip-multimodal index DIR --ray ADDRESS` on a real two-node Ray cluster (a head from
`ray start --head` and a second node joined with `ray start --address`) into a real Chroma
server: the same collection as single-process `index_folder`, and a re-run embeds nothing."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from clip_multimodal.index import ImageIndex
from tests.distributed_helpers import (
    assert_same_collection,
    cluster_env,
    snapshot,
    two_node_cluster,
    write_images,
)

pytestmark = pytest.mark.slow  # two Ray nodes start, and each actor loads the demo model

N_IMAGES = 600


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    command = [str(Path(sys.executable).with_name("clip-multimodal")), *args]
    return subprocess.run(command, capture_output=True, text=True, env=cluster_env(), timeout=600)


def test_cli_on_a_two_node_cluster_matches_index_folder(
    chroma_server: tuple[str, int], demo_encoder: Any, tmp_path: Path
) -> None:
    folder = tmp_path / "photos"
    write_images(folder, N_IMAGES, seed=3)
    host, port = chroma_server
    single = ImageIndex(demo_encoder, "cluster_single", host=host, port=port)
    expected = single.index_folder(folder, progress=False)
    where = ["--host", host, "--port", str(port), "--collection", "cluster_ray"]
    options = ["--ray-workers", "2", "--batch-size", "50", *where]
    with two_node_cluster() as address:
        first = _cli("index", str(folder), "--ray", address, *options)
        assert first.returncode == 0, first.stderr[-3000:]
        assert f"{folder}: {expected}" in first.stdout
        assert "on Ray with 2 worker(s)" in first.stderr  # our summary line after Ray's
        again = _cli("index", str(folder), "--ray", address, *options)
        assert again.returncode == 0, again.stderr[-3000:]
        assert f"unchanged {N_IMAGES}" in again.stdout and "(embedded 0)" in again.stdout
    assert_same_collection(
        snapshot(host, port, "cluster_ray"), snapshot(host, port, "cluster_single")
    )


def test_ray_needs_a_chroma_server(tmp_path: Path) -> None:
    done = _cli("index", str(tmp_path), "--ray")
    assert done.returncode == 2
    assert "--ray writes from every worker to one Chroma server" in done.stderr
