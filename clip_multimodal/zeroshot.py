"""Zero-shot classification by prompt ensembles, in one place for the encoder, the server and
training evaluation.

Each label is filled into every template (`text.fill_template`), the prompts are embedded, and
a label's class vector is the normalized mean of its prompts' embeddings (CLIP, section 3.1.4).
Probabilities are a softmax over cosine similarities times the model's logit scale.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from clip_multimodal.text import Template, fill_template

__all__ = ["check_templates", "class_means", "default_templates", "prompts", "softmax"]


def default_templates() -> list[Template]:
    """open_clip's 80 OpenAI ImageNet templates (imported only when needed)."""
    from open_clip import OPENAI_IMAGENET_TEMPLATES

    return list(OPENAI_IMAGENET_TEMPLATES)


def check_templates(templates: Sequence[Template]) -> None:
    """Raise TemplateError for the first template that `fill_template` refuses, before any work."""
    for template in templates:
        fill_template(template, "")


def prompts(labels: Sequence[str], templates: Sequence[Template]) -> list[str]:
    """Every (label, template) prompt, label-major: label 0's templates first."""
    return [fill_template(template, label) for label in labels for template in templates]


def class_means(prompt_embeddings: np.ndarray, n_classes: int) -> np.ndarray:
    """Average label-major (n_classes * n_templates, d) prompt embeddings into one unit vector
    per class, as float32 (summed in float64; an all-zero mean stays zero, not NaN)."""
    rows = np.asarray(prompt_embeddings, dtype=np.float64)
    mean = rows.reshape(n_classes, -1, rows.shape[-1]).mean(axis=1)
    mean /= np.maximum(np.linalg.norm(mean, axis=1, keepdims=True), 1e-12)
    out: np.ndarray = mean.astype(np.float32)
    return out


def softmax(logits: np.ndarray) -> np.ndarray:
    """Softmax over the last axis (one row of probabilities per image)."""
    shifted = np.exp(logits - logits.max(axis=-1, keepdims=True))
    out: np.ndarray = shifted / shifted.sum(axis=-1, keepdims=True)
    return out
