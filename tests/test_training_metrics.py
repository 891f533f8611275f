"""Validation metrics of the training command: recall with shared captions, zero-shot accuracy,
and the metrics file."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from clip_multimodal.training import recall_at_k
from clip_multimodal.training.metrics import (
    MetricsLog,
    caption_recall,
    class_embeddings,
    zeroshot_accuracy,
)


def _unit(x: np.ndarray) -> np.ndarray:
    out: np.ndarray = (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)
    return out


def test_unique_captions_give_exactly_paired_recall() -> None:
    rng = np.random.default_rng(0)
    images, texts = _unit(rng.normal(size=(40, 8))), _unit(rng.normal(size=(40, 8)))
    texts = _unit(texts + 2 * images)  # some signal, far from perfect
    ours = caption_recall(images, texts, [f"caption {i}" for i in range(40)])
    theirs = recall_at_k(images, texts)
    assert {k: ours[k] for k in theirs} == theirs
    assert ours["mean_recall"] == pytest.approx(np.mean(list(theirs.values())))
    assert 0 < ours["i2t_R@1"] < 1


def test_identical_captions_count_as_one_text() -> None:
    # Two images per caption, each image nearest its own caption's embedding.
    captions = ["a red circle", "a red circle", "a blue square", "a blue square"]
    texts = np.array([[1, 0], [1, 0], [0, 1], [0, 1]], dtype=np.float32)
    images = _unit(np.array([[1, 0.1], [1, -0.1], [0.1, 1], [-0.1, 1]], dtype=np.float32))
    ours = caption_recall(images, texts, captions, ks=(1,))
    assert ours["i2t_R@1"] == 1.0
    assert ours["t2i_R@1"] == 1.0
    # Paired recall would penalise the copies: identical texts tie, and only one wins.
    assert recall_at_k(images, texts, ks=(1,))["i2t_R@1"] == 0.5


def test_recall_checks_its_inputs() -> None:
    with pytest.raises(ValueError, match="3 images, 2 text rows"):
        caption_recall(np.zeros((3, 2)), np.zeros((2, 2)), ["a", "b", "c"])


def test_zeroshot_accuracy_and_class_means() -> None:
    classes = ["cat", "dog", "bird"]
    prompts = _unit(np.repeat(np.eye(3, dtype=np.float32), 2, axis=0) + 0.01)
    cls = class_embeddings(prompts, 3)
    assert cls.shape == (3, 3)
    assert np.allclose(np.linalg.norm(cls, axis=1), 1)
    images = _unit(np.eye(3, dtype=np.float32)[[0, 1, 2, 0]])
    assert zeroshot_accuracy(images, cls, ["cat", "dog", "bird", "dog"], classes) == {
        "zeroshot_top1": 0.75
    }
    with pytest.raises(ValueError, match="not among the zero-shot classes: fish"):
        zeroshot_accuracy(images, cls, ["cat", "dog", "bird", "fish"], classes)


def test_metrics_file_is_rewritten_whole_and_resumes_up_to_an_epoch(tmp_path: Path) -> None:
    path = tmp_path / "metrics.json"
    log = MetricsLog(path, {"model": "m"})
    for epoch in (1, 2, 3):
        log.add_epoch({"epoch": epoch, "loss": 1.0 / epoch, "metrics": {"mean_recall": 0.1}})
    log.add_event({"event": "stage_switch", "epoch": 2, "reason": "plateau"})
    data = json.loads(path.read_text())
    assert [r["epoch"] for r in data["epochs"]] == [1, 2, 3]
    assert data["events"][0]["reason"] == "plateau"
    resumed = MetricsLog.resume(tmp_path / "new.json", {"model": "m"}, None, path, upto_epoch=1)
    assert [r["epoch"] for r in resumed.epochs] == [1]
    assert resumed.events == []
