"""The training examples run end to end on real data and show what they claim."""

from __future__ import annotations

import importlib.util
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import pytest

from tests.training_helpers import one_thread

pytestmark = pytest.mark.slow  # each trains for about half a minute on one CPU thread

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


@pytest.fixture(autouse=True)
def _one_thread() -> Iterator[None]:
    with one_thread():
        yield


def _load(name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(name, EXAMPLES / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_digits_from_scratch_finds_held_out_digits_by_text(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    result = _load("train_digits").main(["--work-dir", str(tmp_path)])
    out = capsys.readouterr().out
    assert "mean precision@10" in out
    assert result["heldout_images"] > 300
    # Chance is 0.1 (ten digits); the run must find held-out digits by text.
    assert result["precision_at_10"] >= 0.9
    assert min(result["per_digit"].values()) >= 0.6
    assert result["r_precision"] >= 0.6
    last = result["last_epoch"]
    assert last["metrics"]["zeroshot_top1"] >= 0.6
    assert (Path(result["output"]) / "final" / "open_clip_config.json").is_file()


def test_two_stage_fine_tune_learns_french_and_keeps_english(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    result = _load("finetune_two_stage").main(["--work-dir", str(tmp_path)])
    out = capsys.readouterr().out
    assert "switching to stage 2" in out
    before, after = result["before"], result["after"]
    # The new vocabulary: near chance before, learned after.
    assert before["french"]["mean_recall"] < 0.3
    assert after["french"]["mean_recall"] >= before["french"]["mean_recall"] + 0.4
    assert after["french"]["t2i_R@5"] >= 0.8
    # The old vocabulary keeps working.
    assert after["english"]["mean_recall"] >= 0.7
    assert after["english"]["mean_recall"] >= before["english"]["mean_recall"] - 0.1
    events = [e["event"] for e in result["events"]]
    assert events[0] == "stage_switch" and events[-1] == "stop"
