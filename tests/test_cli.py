"""The `clip-multimodal` command on the real demo model and real Chroma.

Commands run in-process through `main(argv)` (the entry point's own function) so a failure
shows its output; start-up weight and `serve` run in subprocesses, as users run them.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import types
import uuid
from pathlib import Path
from typing import Any

import httpx
import pytest

from clip_multimodal.cli import main
from tests.server_helpers import free_port, png_bytes

SEVEN = "digits/seven-000.png"
RED_CIRCLE = "shapes/red-circle-small-000.png"
COMMANDS = ("index", "search", "classify", "serve", "train", "demo", "info")
HEAVY = ("torch", "open_clip", "chromadb", "numpy", "fastapi", "uvicorn")


def _name() -> str:
    return f"cli-{uuid.uuid4().hex[:12]}"


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


# -- start-up and help ---------------------------------------------------------------------


def test_help_and_usage_errors_never_import_torch() -> None:
    script = f"""
import json, sys, contextlib, io
from clip_multimodal.cli import main
codes = []
cases = [["--help"], ["--version"], ["search", "--where", "{{", "x"], ["search"], ["index"],
         ["classify", "a.png", "--labels", "one"], ["serve", "--host", "0.0.0.0"],
         ["nonsense"], ["search", "x", "--model", "ViT-B-32"]]
cases += [[c, "--help"] for c in {COMMANDS!r}]
for argv in cases:
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        codes.append(main(argv))
print(json.dumps({{"codes": codes, "heavy": [m for m in {HEAVY!r} if m in sys.modules]}}))
"""
    out = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=True, timeout=60
    )
    result = json.loads(out.stdout)
    assert result["heavy"] == []
    assert result["codes"][:2] == [0, 0]
    assert result["codes"][2:9] == [2] * 7  # each usage error exits 2
    assert result["codes"][9:] == [0] * len(COMMANDS)


def test_the_installed_entry_point_answers_help() -> None:
    exe = Path(sys.executable).with_name("clip-multimodal")
    out = subprocess.run([str(exe), "--help"], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0
    assert all(command in out.stdout for command in COMMANDS)


def test_every_command_documents_the_common_options(capsys: pytest.CaptureFixture[str]) -> None:
    for command in COMMANDS:
        if command == "train":
            continue
        code, out, _ = run(capsys, command, "--help")
        assert code == 0
        for option in (
            "--model",
            "--pretrained",
            "--device",
            "--data-dir",
            "--collection",
            "--debug",
        ):
            assert option in out, (command, option)
        assert "--chroma-host" in out and "--chroma-port" in out, command
        assert "CLIP_MULTIMODAL_DATA_DIR" in out, command


# -- index, search, info -------------------------------------------------------------------


@pytest.fixture(scope="module")
def indexed(tmp_path_factory: pytest.TempPathFactory, demo_images_dir: Path) -> list[str]:
    """Options pointing at a data dir where the demo images were indexed by the CLI."""
    data = tmp_path_factory.mktemp("cli-data")
    options = ["--data-dir", str(data), "--collection", _name(), "--device", "cpu"]
    assert main(["index", str(demo_images_dir), "--no-progress", *options]) == 0
    return options


def test_index_prints_the_report_and_is_incremental(
    capsys: pytest.CaptureFixture[str], indexed: list[str], demo_images_dir: Path
) -> None:
    code, out, _ = run(capsys, "index", str(demo_images_dir), "--no-progress", *indexed)
    assert code == 0
    assert "added 0, updated 0, unchanged 48, removed 0, failed 0 (embedded 0)" in out
    assert "48 images" in out


def test_index_exits_non_zero_and_names_the_failed_file(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    folder = tmp_path / "imgs"
    folder.mkdir()
    (folder / "good.png").write_bytes(png_bytes((200, 10, 10)))
    (folder / "broken.png").write_bytes(b"\x89PNG but then nothing")
    code, out, err = run(
        capsys, "index", str(folder), "--no-progress", "--data-dir", str(tmp_path / "d")
    )
    assert code == 1
    assert "added 1," in out and "failed 1" in out
    assert "failed: " in out and "broken.png" in out
    assert err.strip().startswith("error: 1 image could not be indexed")


def test_text_search_prints_hits_and_json(
    capsys: pytest.CaptureFixture[str], indexed: list[str]
) -> None:
    code, out, _ = run(capsys, "search", "a handwritten seven", "-k", "3", *indexed)
    assert code == 0
    lines = out.strip().splitlines()
    assert len(lines) == 3 and any(line.endswith(SEVEN) for line in lines), out
    code, out, _ = run(capsys, "search", "a handwritten seven", "-k", "3", "--json", *indexed)
    hits = json.loads(out)
    assert [set(h) for h in hits] == [{"id", "uri", "score", "metadata", "document"}] * 3
    assert any(h["uri"].endswith(SEVEN) for h in hits)
    assert hits[0]["score"] >= hits[1]["score"] >= hits[2]["score"]


def test_image_search_and_where_filter(
    capsys: pytest.CaptureFixture[str], indexed: list[str], demo_images_dir: Path
) -> None:
    probe = demo_images_dir / RED_CIRCLE
    code, out, _ = run(capsys, "search", "--image", str(probe), "-k", "2", "--json", *indexed)
    hits = json.loads(out)
    assert code == 0 and hits[0]["uri"] == str(probe.absolute()) and hits[0]["score"] > 0.99
    where = json.dumps({"folder": "/no/such/folder"})
    code, out, _ = run(capsys, "search", "a cat", "--where", where, "--json", *indexed)
    assert code == 0 and json.loads(out) == []


def test_info_shows_the_model_and_the_collection(
    capsys: pytest.CaptureFixture[str], indexed: list[str], demo_encoder: Any
) -> None:
    code, out, _ = run(capsys, "info", "--json", *indexed)
    info = json.loads(out)
    assert code == 0
    assert info["model_id"] == demo_encoder.model_id and info["device"] == "cpu"
    assert info["collection"]["count"] == 48
    assert info["collection"]["model_id"] == demo_encoder.model_id
    code, out, _ = run(capsys, "info", *indexed)
    assert "48 images" in out and "matches the model" in out
    missing = [*indexed[:2], "--collection", "never-made"]
    code, out, err = run(capsys, "info", *missing)
    assert code == 1 and "never-made (not found)" in out and "no collection 'never-made'" in err


def test_index_and_search_against_a_chroma_server(
    capsys: pytest.CaptureFixture[str], chroma_server: tuple[str, int], demo_images_dir: Path
) -> None:
    host, port = chroma_server
    options = ["--host", host, "--port", str(port), "--collection", _name()]
    code, out, _ = run(capsys, "index", str(demo_images_dir / "digits"), "--no-progress", *options)
    assert code == 0 and "added 16" in out
    code, out, _ = run(capsys, "search", "a handwritten seven", "-k", "1", *options)
    assert code == 0 and out.strip().endswith(SEVEN)


# -- classify ------------------------------------------------------------------------------


def test_classify_labels_each_image_and_reports_a_bad_one(
    capsys: pytest.CaptureFixture[str], demo_images_dir: Path, tmp_path: Path
) -> None:
    labels = "a handwritten seven,a small red circle on a light background,a silhouette of a cat"
    images = [
        str(demo_images_dir / SEVEN),
        str(tmp_path / "missing.png"),
        str(demo_images_dir / RED_CIRCLE),
    ]
    code, out, _ = run(capsys, "classify", *images, "--labels", labels, "--json")
    assert code == 1  # one image could not be read; the others were classified
    results = {r["image"]: r for r in json.loads(out)}
    assert results[images[0]]["predictions"][0]["label"] == "a handwritten seven"
    assert results[images[2]]["predictions"][0]["label"].startswith("a small red circle")
    assert "no such file" in results[images[1]]["error"]
    probs = [p["probability"] for p in results[images[0]]["predictions"]]
    assert sum(probs) == pytest.approx(1.0, abs=1e-5)
    code, out, _ = run(
        capsys, "classify", images[0], "--labels", labels, "--template", "{}", "--top", "1"
    )
    assert code == 0 and out.splitlines()[1].endswith("a handwritten seven")


# -- errors --------------------------------------------------------------------------------


def test_runtime_errors_print_one_line_and_a_traceback_only_with_debug(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    argv = ["info", "--model", f"local-dir:{tmp_path / 'nope'}", "--data-dir", str(tmp_path)]
    code, out, err = run(capsys, *argv)
    assert code == 1 and out == ""
    assert err.startswith("error: ") and err.count("\n") == 1 and "does not exist" in err
    code, _, err = run(capsys, *argv, "--debug")
    assert code == 1 and "Traceback (most recent call last)" in err
    assert err.strip().splitlines()[-1].startswith("error: ")


def test_usage_errors_exit_2_with_one_clear_line(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    cases = {
        ("search",): "give a text query or --image",
        ("search", "x", "--image", "y.png"): "give a text query or --image",
        ("search", "x", "--where", "[1]"): "--where must be a JSON object",
        ("search", "x", "-k", "0"): "-k must be at least 1",
        ("search", "x", "--model", "ViT-B-32"): "--pretrained",
        ("classify", "a.png", "--labels", "cat,dog", "--template", "no slot"): "has no {}",
        ("classify", "a.png", "--labels", "cat,dog", "--template", "{}{:>9999}"): "exactly one {}",
        ("index", str(tmp_path / "missing")): "is not a folder",
        ("serve", "--host", "0.0.0.0"): "refusing to bind 0.0.0.0 without a token",
    }
    for argv, message in cases.items():
        code, _, err = run(capsys, *argv, "--data-dir", str(tmp_path))
        assert code == 2, argv
        assert err.startswith("error: ") and message in err and err.count("\n") == 1, err


# -- train and demo ------------------------------------------------------------------------


def test_train_hands_its_arguments_to_the_training_command(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    seen: list[list[str]] = []

    def fake_main(argv: list[str]) -> int:
        seen.append(argv)
        return 3

    module = types.ModuleType("clip_multimodal.cli._train")
    module.main = fake_main  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "clip_multimodal.cli._train", module)
    assert main(["train", "--epochs", "1", "--help"]) == 3
    assert seen == [["--epochs", "1", "--help"]]


def test_demo_indexes_and_searches_under_the_data_dir(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    code, out, _ = run(capsys, "demo", "--data-dir", str(tmp_path))
    assert code == 0
    assert "first run: added 48" in out and "second run: added 0" in out
    assert (tmp_path / "demo-images" / SEVEN).is_file() and (tmp_path / "chroma").is_dir()


# -- serve ---------------------------------------------------------------------------------


@pytest.mark.slow  # a fresh process imports torch and loads the model
def test_serve_runs_the_service_over_a_chroma_server(
    capsys: pytest.CaptureFixture[str],
    chroma_server: tuple[str, int],
    demo_images_dir: Path,
    tmp_path: Path,
) -> None:
    host, chroma_port = chroma_server
    collection = _name()
    chroma = ["--collection", collection, "--host", host, "--port", str(chroma_port)]
    assert main(["index", str(demo_images_dir / "digits"), "--no-progress", *chroma]) == 0
    capsys.readouterr()
    port = free_port()
    argv = ["serve", "--port", str(port), "--collection", collection, "--device", "cpu"]
    argv += ["--chroma-host", host, "--chroma-port", str(chroma_port), "--log-level", "warning"]
    log = (tmp_path / "serve.log").open("wb")
    env = {**os.environ, "CLIP_MULTIMODAL_DATA_DIR": str(tmp_path)}
    proc = subprocess.Popen(
        [sys.executable, "-m", "clip_multimodal.cli", *argv], stdout=log, stderr=log, env=env
    )
    try:
        base = f"http://127.0.0.1:{port}"
        _wait_until_up(f"{base}/healthz", proc)
        health = httpx.get(f"{base}/healthz").json()
        assert health["index_count"] == 16
        hits = httpx.post(f"{base}/v1/search", json={"text": "a handwritten seven", "k": 1}).json()
        assert hits["hits"][0]["uri"].endswith(SEVEN)
        page = httpx.get(f"{base}/")
        assert page.status_code == 200 and "<title>clip-multimodal" in page.text
    finally:
        proc.terminate()
        proc.wait(20)
        log.close()
    assert "serving " in (tmp_path / "serve.log").read_text()


def _wait_until_up(url: str, proc: subprocess.Popen[bytes], timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"serve exited early with {proc.returncode}")
        try:
            if httpx.get(url, timeout=1).status_code == 200:
                return
        except httpx.TransportError:
            time.sleep(0.2)
    raise AssertionError(f"serve did not answer at {url}")
