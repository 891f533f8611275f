"""The CLIP loss against a direct NumPy transcription of the paper's pseudo-code."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from clip_multimodal.training.loss import MAX_LOGIT_SCALE, clamp_logit_scale, clip_loss


def l2_normalize(x: np.ndarray, axis: int) -> np.ndarray:
    return x / np.linalg.norm(x, axis=axis, keepdims=True)


def cross_entropy_loss(logits: np.ndarray, labels: np.ndarray, axis: int) -> float:
    """Mean cross-entropy with the softmax taken along `axis`."""
    shifted = logits - logits.max(axis=axis, keepdims=True)
    log_probs = shifted - np.log(np.exp(shifted).sum(axis=axis, keepdims=True))
    picked = (
        log_probs[labels, np.arange(len(labels))]
        if axis == 0
        else log_probs[np.arange(len(labels)), labels]
    )
    return float(-picked.mean())


def reference_loss(
    i_f: np.ndarray, t_f: np.ndarray, w_i: np.ndarray, w_t: np.ndarray, t: float
) -> float:
    """Figure 3 of the CLIP paper, line by line."""
    n = i_f.shape[0]
    i_e = l2_normalize(np.dot(i_f, w_i), axis=1)
    t_e = l2_normalize(np.dot(t_f, w_t), axis=1)
    logits = np.dot(i_e, t_e.T) * np.exp(t)
    labels = np.arange(n)
    loss_i = cross_entropy_loss(logits, labels, axis=0)
    loss_t = cross_entropy_loss(logits, labels, axis=1)
    return (loss_i + loss_t) / 2


@pytest.mark.parametrize(("n", "t"), [(2, 0.0), (7, math.log(1 / 0.07)), (16, 3.9)])
def test_matches_numpy_pseudo_code(n: int, t: float) -> None:
    rng = np.random.default_rng(n)
    i_f, t_f = rng.standard_normal((n, 12)), rng.standard_normal((n, 9))
    w_i, w_t = rng.standard_normal((12, 5)), rng.standard_normal((9, 5))
    expected = reference_loss(i_f, t_f, w_i, w_t, t)
    got = clip_loss(
        torch.from_numpy(i_f @ w_i),
        torch.from_numpy(t_f @ w_t),
        torch.tensor(t, dtype=torch.float64),
    )
    assert abs(float(got) - expected) < 1e-5


def test_rows_and_columns_both_count() -> None:
    # Asymmetric logits: row-wise and column-wise CE differ, so a one-sided loss would not match.
    rng = np.random.default_rng(3)
    img, txt = rng.standard_normal((5, 4)), rng.standard_normal((5, 4))
    eye = np.eye(4)
    logits = l2_normalize(img, 1) @ l2_normalize(txt, 1).T * np.exp(2.0)
    rows = cross_entropy_loss(logits, np.arange(5), axis=1)
    cols = cross_entropy_loss(logits, np.arange(5), axis=0)
    assert abs(rows - cols) > 1e-3
    got = float(
        clip_loss(
            torch.from_numpy(img), torch.from_numpy(txt), torch.tensor(2.0, dtype=torch.float64)
        )
    )
    assert abs(got - reference_loss(img, txt, eye, eye, 2.0)) < 1e-5


def test_temperature_is_clamped_at_100() -> None:
    rng = np.random.default_rng(0)
    img, txt = (
        torch.from_numpy(rng.standard_normal((6, 8))),
        torch.from_numpy(rng.standard_normal((6, 8))),
    )
    at_cap = clip_loss(img, txt, torch.tensor(math.log(MAX_LOGIT_SCALE), dtype=torch.float64))
    beyond = clip_loss(img, txt, torch.tensor(10.0, dtype=torch.float64))
    below = clip_loss(img, txt, torch.tensor(3.0, dtype=torch.float64))
    assert float(beyond) == pytest.approx(float(at_cap), abs=1e-12)
    assert float(below) != pytest.approx(float(at_cap), abs=1e-6)


def test_clamp_logit_scale_keeps_the_parameter_in_range() -> None:
    model = torch.nn.Module()
    model.logit_scale = torch.nn.Parameter(torch.tensor(7.0))
    clamp_logit_scale(model)
    assert model.logit_scale.item() == pytest.approx(math.log(100))
    model.logit_scale.data.fill_(-1.0)
    clamp_logit_scale(model)
    assert model.logit_scale.item() == 0.0


def test_loss_is_differentiable_in_features_and_temperature() -> None:
    img = torch.randn(4, 6, dtype=torch.float64, requires_grad=True)
    txt = torch.randn(4, 6, dtype=torch.float64, requires_grad=True)
    t = torch.tensor(1.5, dtype=torch.float64, requires_grad=True)
    clip_loss(img, txt, t).backward()
    assert img.grad is not None
    assert txt.grad is not None
    assert t.grad is not None
    assert float(t.grad) != 0.0
