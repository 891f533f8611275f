"""The record every offline dataset yields, and the split names they share."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from PIL import Image

__all__ = [
    "DEFAULT_IMAGE_SIZE",
    "LANGUAGES",
    "SPLITS",
    "Language",
    "Sample",
    "Split",
    "check_language",
    "check_split",
]

Split = Literal["train", "heldout"]
SPLITS: tuple[str, ...] = ("train", "heldout")
#: Caption languages: English and (simplified) Chinese. Every dataset draws the same images and
#: templates of the same meaning for each language, so a seed gives the same pictures in both.
Language = Literal["en", "zh"]
LANGUAGES: tuple[Language, ...] = ("en", "zh")

#: The demo model's input size; datasets draw at this size so no resize blurs the training data.
DEFAULT_IMAGE_SIZE = 64


@dataclass(frozen=True)
class Sample:
    """One image with its caption.

    Attributes:
        image: an RGB PIL image.
        caption: the text paired with the image for training ("a small red circle ...").
        label: the class the image belongs to, used as the relevance key in evaluation
            ("small red circle", "seven", "cat").
        group: the dataset it came from: "shapes", "digits" or "animals".
    """

    image: Image.Image
    caption: str
    label: str
    group: str


def check_split(split: str) -> None:
    """Raise ValueError unless `split` names one of SPLITS."""
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}: use one of {', '.join(SPLITS)}")


def check_language(lang: str) -> None:
    """Raise ValueError unless `lang` names one of LANGUAGES."""
    if lang not in LANGUAGES:
        raise ValueError(f"unknown caption language {lang!r}: use one of {', '.join(LANGUAGES)}")
