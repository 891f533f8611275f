"""The one zero-shot module gives what the encoder, the server and training evaluation each
computed with their own copies before (those copies are written out here as the reference)."""

from __future__ import annotations

import numpy as np
import open_clip
import pytest

from clip_multimodal import zeroshot
from clip_multimodal.encoder import CLIPEncoder
from clip_multimodal.errors import TemplateError
from clip_multimodal.text import Template, fill_template


def _prompt_rows(n_classes: int, n_templates: int, dim: int = 16) -> np.ndarray:
    rows = np.random.default_rng(0).normal(size=(n_classes * n_templates, dim))
    out: np.ndarray = (rows / np.linalg.norm(rows, axis=1, keepdims=True)).astype(np.float32)
    return out


def _old_encoder_means(vectors: np.ndarray, n: int) -> np.ndarray:
    mean: np.ndarray = vectors.reshape(n, -1, vectors.shape[1]).mean(axis=1)
    mean /= np.linalg.norm(mean, axis=1, keepdims=True)
    return mean.astype(np.float32)


def _old_server_means(vectors: np.ndarray, n: int) -> np.ndarray:
    mean = vectors.reshape(n, -1, vectors.shape[1]).mean(axis=1)
    mean /= np.maximum(np.linalg.norm(mean, axis=1, keepdims=True), 1e-12)
    out: np.ndarray = mean.astype(np.float32)
    return out


def _old_training_means(vectors: np.ndarray, n: int) -> np.ndarray:
    per_prompt = np.asarray(vectors, dtype=np.float64).reshape(n, -1, vectors.shape[1])
    mean = per_prompt.mean(axis=1)
    mean /= np.linalg.norm(mean, axis=1, keepdims=True)
    out: np.ndarray = mean.astype(np.float32)
    return out


@pytest.mark.parametrize("old", [_old_encoder_means, _old_server_means, _old_training_means])
def test_class_means_match_each_callers_old_copy(old: object) -> None:
    vectors = _prompt_rows(5, 7)
    got = zeroshot.class_means(vectors, 5)
    assert got.dtype == np.float32 and got.shape == (5, 16)
    np.testing.assert_allclose(got, old(vectors, 5), atol=1e-6)  # type: ignore[operator]


def test_class_means_of_opposite_prompts_is_zero_not_nan() -> None:
    vectors = np.array([[1.0, 0.0], [-1.0, 0.0]], dtype=np.float32)
    assert np.array_equal(zeroshot.class_means(vectors, 1), np.zeros((1, 2), dtype=np.float32))


def test_prompts_are_label_major_with_str_and_callable_templates() -> None:
    templates: list[Template] = ["a photo of a {}.", lambda c: f"art of {c}"]
    assert zeroshot.prompts(["cat", "dog"], templates) == [
        "a photo of a cat.",
        "art of cat",
        "a photo of a dog.",
        "art of dog",
    ]
    # The order every caller used before: for label, for template.
    old = [fill_template(t, c) for c in ["cat", "dog"] for t in templates]
    assert zeroshot.prompts(["cat", "dog"], templates) == old


def test_default_templates_are_open_clips_imagenet_ensemble() -> None:
    assert zeroshot.default_templates() == list(open_clip.OPENAI_IMAGENET_TEMPLATES)


def test_check_templates_refuses_the_first_bad_one() -> None:
    zeroshot.check_templates(["{}", "a photo of {}", lambda c: c])
    with pytest.raises(TemplateError, match="exactly one"):
        zeroshot.check_templates(["{}", "no slot"])


def test_softmax_matches_the_encoders_rows_and_the_servers_vector() -> None:
    logits = np.random.default_rng(1).normal(size=(4, 6)) * 30
    shifted = logits - logits.max(axis=1, keepdims=True)  # the encoder's 2-D copy
    rows = np.exp(shifted) / np.exp(shifted).sum(axis=1, keepdims=True)
    np.testing.assert_allclose(zeroshot.softmax(logits), rows, rtol=1e-12)
    one = np.exp(logits[0] - logits[0].max())  # the server's 1-D copy
    np.testing.assert_allclose(zeroshot.softmax(logits[0]), one / one.sum(), rtol=1e-12)


def test_encoder_classify_matches_the_old_computation(demo_encoder: CLIPEncoder) -> None:
    from clip_multimodal.datasets import digit_samples

    images = [s.image for s in digit_samples("heldout")[:8]]
    labels = ["a handwritten seven", "a handwritten one", "a red circle"]
    templates = ["{}", "a picture of {}"]
    prompts = [fill_template(t, c) for c in labels for t in templates]
    classes = _old_encoder_means(demo_encoder.embed_texts(prompts), len(labels))
    logits = demo_encoder.embed_images(images) @ classes.T * demo_encoder.logit_scale
    logits -= logits.max(axis=1, keepdims=True)
    old = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    got = demo_encoder.classify(images, labels, templates)
    assert got.dtype == np.float32
    np.testing.assert_allclose(got, old, atol=1e-5)
