"""Animal silhouettes from the `animal-mnist` package (10 000 images, 28x28, 10 animals).

The package's own loader imports tensorflow, so this module reads its gzip-pickled arrays
directly. Labels 0..9 are, in order, ANIMAL_NAMES (checked against the images: the package
README lists the classes alphabetically and each label's images show that animal).
"""

from __future__ import annotations

import gzip
import pickle
from functools import lru_cache
from importlib import resources

import numpy as np
from PIL import Image

from clip_multimodal.datasets._sample import DEFAULT_IMAGE_SIZE, Sample, Split, check_split
from clip_multimodal.errors import MissingDependencyError

__all__ = ["ANIMAL_NAMES", "animal_query", "animal_samples"]

ANIMAL_NAMES: tuple[str, ...] = (
    "bear",
    "bird",
    "cat",
    "cow",
    "dog",
    "elephant",
    "giraffe",
    "horse",
    "sheep",
    "zebra",
)
_TEMPLATES: tuple[str, ...] = (
    "a silhouette of a {name}",
    "a {name} silhouette",
    "a white silhouette of a {name} on black",
)
HELDOUT_FRACTION = 0.2


def animal_query(name: str) -> str:
    """The text query used to retrieve an animal: "a silhouette of a cat"."""
    return _TEMPLATES[0].format(name=name)


def _read(name: str) -> np.ndarray:
    try:
        folder = resources.files("animal_mnist") / "data" / "Animal_MNIST"
    except ModuleNotFoundError as exc:
        raise MissingDependencyError(
            "The animal silhouettes need the 'animal_mnist' package, which is not installed. "
            "Install its data with: pip install --no-deps animal-mnist"
        ) from exc
    with (folder / name).open("rb") as raw, gzip.open(raw, "rb") as f:
        # The package's own data files, pickled numpy arrays; not untrusted input.
        return np.asarray(pickle.load(f))


@lru_cache(maxsize=1)
def _load() -> tuple[np.ndarray, np.ndarray]:
    images = _read("animal_data_version_3.gz").astype(np.uint8)
    labels = _read("animal_label_version_3.gz").astype(np.int64)
    return images, labels


def _split_indices(labels: np.ndarray, split: Split, seed: int) -> np.ndarray:
    rng = np.random.default_rng([seed, 3])
    held = np.zeros(len(labels), dtype=bool)
    for label in range(len(ANIMAL_NAMES)):
        idx = rng.permutation(np.flatnonzero(labels == label))
        held[idx[: round(len(idx) * HELDOUT_FRACTION)]] = True
    return np.flatnonzero(held if split == "heldout" else ~held)


def animal_samples(
    split: Split = "train", n: int | None = None, seed: int = 0, size: int = DEFAULT_IMAGE_SIZE
) -> list[Sample]:
    """Animal silhouettes of one split, with captions.

    Args:
        split: "train" (80 % of each animal) or "heldout" (the other 20 %).
        n: take at most this many, spread over the animals (the split's order is shuffled by
            `seed`); None takes the whole split.
        seed: fixes the split, the order and the caption templates.
        size: the image side in pixels.

    Returns:
        Samples with group "animals" and label the animal's name ("cat").

    Raises:
        MissingDependencyError: the animal-mnist package is not installed.
    """
    check_split(split)
    images, labels = _load()
    rng = np.random.default_rng([seed, 4])
    chosen = rng.permutation(_split_indices(labels, split, seed))
    if n is not None:
        chosen = chosen[:n]
    samples = []
    for i in chosen:
        name = ANIMAL_NAMES[int(labels[i])]
        template = (
            _TEMPLATES[0] if split == "heldout" else _TEMPLATES[rng.integers(len(_TEMPLATES))]
        )
        image = Image.fromarray(images[i]).resize((size, size), Image.Resampling.BICUBIC)
        samples.append(
            Sample(
                image=image.convert("RGB"),
                caption=template.format(name=name),
                label=name,
                group="animals",
            )
        )
    return samples
