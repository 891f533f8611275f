"""The CLI's store repairs on the real demo model: `info --check`, `index --rebuild`, `--verify`."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from clip_multimodal.cli import main
from clip_multimodal.index._health import SQLITE_NAME, forget_client


def _run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    root = tmp_path / "imgs"
    root.mkdir()
    rng = np.random.default_rng(3)
    for i in range(6):
        Image.fromarray(rng.integers(0, 256, (24, 24, 3), dtype=np.uint8)).save(root / f"{i}.png")
    return root


def test_check_finds_a_deleted_database_and_rebuild_repairs_it(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, folder: Path
) -> None:
    data = tmp_path / "data"
    common = ("--data-dir", str(data), "--collection", "photos")
    assert _run(capsys, "index", str(folder), *common, "--no-progress")[0] == 0
    assert _run(capsys, "info", "--check", *common)[0] == 0
    store = data / "chroma"
    forget_client(store)  # as the next command, a new process, would find it
    (store / SQLITE_NAME).unlink()

    checked = _run(capsys, "info", "--check", *common)
    info = _run(capsys, "info", *common)
    searched = _run(capsys, "search", "a cat", *common)
    rebuilt = _run(capsys, "index", str(folder), *common, "--rebuild", "--no-progress")
    after = _run(capsys, "info", "--check", "--json", *common)

    assert checked[0] == 1 and str(store) in checked[2] and "DAMAGED" in checked[1]
    for code, _, err in (info, searched):
        assert code == 1 and str(store) in err and "--rebuild" in err
        assert "not created yet" not in err and "is empty" not in err
    assert rebuilt[0] == 0 and "added 6" in rebuilt[1]
    health = json.loads(after[1])
    assert after[0] == 0 and (health["ok"], health["count"], health["reachable"]) == (True, 6, 6)


def test_verify_re_embeds_a_file_rewritten_with_the_same_size_and_mtime(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, folder: Path
) -> None:
    common = ("--data-dir", str(tmp_path / "data"), "--no-progress")
    assert _run(capsys, "index", str(folder), *common)[0] == 0
    target, donor = folder / "0.png", folder / "1.png"
    stat = target.stat()
    assert donor.stat().st_size == stat.st_size  # same geometry and random pixels
    target.write_bytes(donor.read_bytes())
    os.utime(target, ns=(stat.st_atime_ns, stat.st_mtime_ns))

    quick = _run(capsys, "index", str(folder), *common)
    verified = _run(capsys, "index", str(folder), *common, "--verify")

    assert "updated 0, unchanged 6" in quick[1]
    assert "updated 1, unchanged 5" in verified[1]
