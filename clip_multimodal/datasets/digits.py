"""Real handwritten digits: scikit-learn's `load_digits` (1797 images of 8x8 pixels).

The tiny scans are upscaled to the model's image size as dark ink on white paper and captioned
"a handwritten seven" (in Chinese "手写的数字七"). The train/held-out split is stratified by digit and fixed by a seed.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any

import numpy as np
from PIL import Image

from clip_multimodal.datasets._sample import (
    DEFAULT_IMAGE_SIZE,
    Language,
    Sample,
    Split,
    check_language,
    check_split,
)
from clip_multimodal.errors import require

__all__ = ["DIGIT_NAMES", "digit_query", "digit_samples"]

DIGIT_NAMES: tuple[str, ...] = (
    "zero",
    "one",
    "two",
    "three",
    "four",
    "five",
    "six",
    "seven",
    "eight",
    "nine",
)
#: The Chinese numerals, in the order of DIGIT_NAMES.
_ZH_DIGITS = "零一二三四五六七八九"
#: The caption templates of each language, the same meanings in the same order (the first is
#: the query form); the template draw does not depend on the language.
_TEMPLATES: dict[Language, tuple[str, ...]] = {
    "en": (
        "a handwritten {name}",
        "a handwritten digit {name}",
        "the number {name}, written by hand",
    ),
    "zh": ("手写的数字{name}", "一个手写数字{name}", "数字{name}的手写体"),
}
HELDOUT_FRACTION = 0.2


def _caption(template: str, name: str, lang: Language) -> str:
    word = _ZH_DIGITS[DIGIT_NAMES.index(name)] if lang == "zh" else name
    return template.format(name=word)


def digit_query(name: str, lang: Language = "en") -> str:
    """The text query used to retrieve a digit: "a handwritten seven", "手写的数字七"."""
    check_language(lang)
    return _caption(_TEMPLATES[lang][0], name, lang)


@lru_cache(maxsize=1)
def _load() -> tuple[np.ndarray, np.ndarray]:
    datasets: Any = require("sklearn.datasets", "datasets", "The digits dataset")
    bunch = datasets.load_digits()
    return np.asarray(bunch.images, dtype=np.float32), np.asarray(bunch.target, dtype=np.int64)


def _split_indices(targets: np.ndarray, split: Split, seed: int) -> np.ndarray:
    """A stratified split: HELDOUT_FRACTION of every digit is held out."""
    rng = np.random.default_rng(seed)
    held: list[np.ndarray] = []
    for digit in range(len(DIGIT_NAMES)):
        idx = np.flatnonzero(targets == digit)
        held.append(rng.permutation(idx)[: round(len(idx) * HELDOUT_FRACTION)])
    held_set = np.zeros(len(targets), dtype=bool)
    held_set[np.concatenate(held)] = True
    return np.flatnonzero(held_set if split == "heldout" else ~held_set)


def _render(pixels: np.ndarray, size: int) -> Image.Image:
    """8x8 ink intensities (0..16) -> an RGB image of dark ink on white paper."""
    grey = (255.0 - pixels * (255.0 / 16.0)).astype(np.uint8)
    return Image.fromarray(grey).resize((size, size), Image.Resampling.BICUBIC).convert("RGB")


def digit_samples(
    split: Split = "train", seed: int = 0, size: int = DEFAULT_IMAGE_SIZE, lang: Language = "en"
) -> list[Sample]:
    """The digits of one split, with captions.

    Args:
        split: "train" (80 % of each digit) or "heldout" (the other 20 %).
        seed: fixes the split and the caption templates.
        size: the image side in pixels.
        lang: the caption language; the images do not depend on it.

    Returns:
        Samples with group "digits" and label the digit's name ("seven"). Held-out captions use
        the query template ("a handwritten seven").

    Raises:
        MissingDependencyError: scikit-learn is not installed (the `datasets` extra).
    """
    check_split(split)
    check_language(lang)
    templates = _TEMPLATES[lang]
    images, targets = _load()
    rng = np.random.default_rng([seed, 2])
    samples = []
    for i in _split_indices(targets, split, seed):
        name = DIGIT_NAMES[int(targets[i])]
        template = templates[0] if split == "heldout" else templates[rng.integers(len(templates))]
        image = _render(images[i], size)
        samples.append(
            Sample(image=image, caption=_caption(template, name, lang), label=name, group="digits")
        )
    return samples
