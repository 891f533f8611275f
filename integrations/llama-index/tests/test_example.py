"""examples/llamaindex_multimodal_rag.py, run as a user runs it: build, then reload."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[3]
SCRIPT = REPO / "examples" / "llamaindex_multimodal_rag.py"


def _run(*args: str, cwd: Path) -> tuple[str, str]:
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]),
    }
    done = subprocess.run(
        [sys.executable, "-W", "error::DeprecationWarning:llama_index", str(SCRIPT), *args],
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
        cwd=cwd,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout, done.stderr


@pytest.mark.slow  # two runs of the script, each a fresh Python with torch
def test_example_builds_then_reloads(mixed_dir: Path, tmp_path: Path) -> None:
    """On a folder under a hidden one, as `make demo` writes it (.data/demo-images)."""
    folder = tmp_path / ".data" / "demo-images"
    shutil.copytree(mixed_dir, folder)
    data = tmp_path / "rag-data"
    zebra = next(folder.glob("animals/zebra-*.png"))
    args = [str(folder), "--data-dir", str(data), "--question", "a handwritten seven"]

    first, noise = _run(*args, "--image", str(zebra), cwd=tmp_path)
    assert first.startswith("Built the index")
    assert "llama-index-readers-file" not in noise
    assert "INFO" not in noise  # the model loaded without configuring the root logger
    image_lines = [line for line in first.splitlines() if "ImageNode" in line]
    assert len(image_lines) == 3
    assert "/digits/seven-" in image_lines[0]
    assert "I was shown 3 image(s)" in first
    similar = first.split(f"Images like {zebra}:", 1)[1].splitlines()
    assert str(zebra) in similar[1]

    second, _ = _run(*args, cwd=tmp_path)
    assert second.startswith("Reloaded the index")
    assert [line for line in second.splitlines() if "ImageNode" in line] == image_lines


def test_llm_spec_is_module_colon_factory() -> None:
    from examples.llamaindex_multimodal_rag import EchoMultiModalLLM, load_llm

    assert isinstance(load_llm(None), EchoMultiModalLLM)
    echo = load_llm("examples.llamaindex_multimodal_rag:EchoMultiModalLLM")
    assert isinstance(echo, EchoMultiModalLLM)
    with pytest.raises(SystemExit, match="module:factory"):
        load_llm("nocolon")
