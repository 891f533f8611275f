"""Animal silhouettes from the `animal-mnist` package (10 000 images, 28x28, 10 animals).

The package's own loader imports tensorflow, so this module reads its gzip-pickled arrays
directly. Labels 0..9 are, in order, ANIMAL_NAMES (checked against the images: the package
README lists the classes alphabetically and each label's images show that animal).

Without the package, the images the demo and the quality tests use come from a small asset
shipped in the wheel (`assets/animals/`, every label plus the images of `ASSET_REQUESTS`), so
`pip install "clip-multimodal[datasets]"` runs the demo. `build_animal_asset` writes it.
"""

from __future__ import annotations

import gzip
import pickle
from functools import lru_cache
from importlib import resources
from importlib.resources.abc import Traversable
from pathlib import Path

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
#: The Chinese name of each animal with its measure word ("一只猫": a cat).
_ZH_NAMES: dict[str, tuple[str, str]] = {
    "bear": ("头", "熊"),
    "bird": ("只", "鸟"),
    "cat": ("只", "猫"),
    "cow": ("头", "牛"),
    "dog": ("只", "狗"),
    "elephant": ("头", "大象"),
    "giraffe": ("只", "长颈鹿"),
    "horse": ("匹", "马"),
    "sheep": ("只", "羊"),
    "zebra": ("匹", "斑马"),
}
#: The caption templates of each language, the same meanings in the same order (the first is
#: the query form); the template draw does not depend on the language.
_TEMPLATES: dict[Language, tuple[str, ...]] = {
    "en": (
        "a silhouette of a {name}",
        "a {name} silhouette",
        "a white silhouette of a {name} on black",
    ),
    "zh": ("一{unit}{name}的剪影", "{name}的剪影", "黑底上{name}的白色剪影"),
}
HELDOUT_FRACTION = 0.2
#: The bundled subset: the package's images at `indices` and all its labels, as uint8.
ANIMAL_ASSET = Path(__file__).parent.parent / "assets" / "animals" / "animals.npz"
#: The (split, n, seed) requests the asset answers exactly as the package does: the demo
#: folder's images (seed 0, at most 50) and the demo model's quality tests (seed 20240, 320).
ASSET_REQUESTS: tuple[tuple[Split, int, int], ...] = (("heldout", 50, 0), ("heldout", 320, 20240))


def _caption(template: str, name: str, lang: Language) -> str:
    if lang == "zh":
        unit, word = _ZH_NAMES[name]
        return template.format(unit=unit, name=word)
    return template.format(name=name)


def animal_query(name: str, lang: Language = "en") -> str:
    """The text query used to retrieve an animal: "a silhouette of a cat", "一只猫的剪影"."""
    check_language(lang)
    return _caption(_TEMPLATES[lang][0], name, lang)


def _package_data() -> Traversable | None:
    """The animal-mnist package's data folder, or None when the package is not installed."""
    try:
        return resources.files("animal_mnist") / "data" / "Animal_MNIST"
    except ModuleNotFoundError:
        return None


def _read(folder: Traversable, name: str) -> np.ndarray:
    with (folder / name).open("rb") as raw, gzip.open(raw, "rb") as f:
        # The package's own data files, pickled numpy arrays; not untrusted input.
        return np.asarray(pickle.load(f))


def _read_package(folder: Traversable) -> tuple[np.ndarray, np.ndarray]:
    images = _read(folder, "animal_data_version_3.gz").astype(np.uint8)
    labels = _read(folder, "animal_label_version_3.gz").astype(np.int64)
    return images, labels


@lru_cache(maxsize=1)
def _load() -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """(images, labels, indices): the package's 10 000 images with indices None, or else the
    asset's subset, whose images[k] is the package's image indices[k]; labels are always all."""
    folder = _package_data()
    if folder is None:
        with np.load(ANIMAL_ASSET, allow_pickle=False) as asset:
            images, labels, indices = (
                np.asarray(asset[k]) for k in ("images", "labels", "indices")
            )
        return images, labels.astype(np.int64), indices
    return (*_read_package(folder), None)


def _images_at(chosen: np.ndarray) -> np.ndarray:
    images, _, stored = _load()
    if stored is None:
        return np.take(images, chosen, axis=0)
    pos = np.minimum(np.searchsorted(stored, chosen), len(stored) - 1)
    if not np.array_equal(stored[pos], chosen):
        raise MissingDependencyError(
            "The bundled animal silhouettes hold only the demo's images; this request needs "
            "the 'animal_mnist' package, which is not installed. Install its data with: "
            "pip install --no-deps animal-mnist"
        )
    return np.take(images, pos, axis=0)


def _chosen(
    rng: np.random.Generator, labels: np.ndarray, split: Split, n: int | None, seed: int
) -> np.ndarray:
    """The package indices of a request, in the order the samples come."""
    chosen = rng.permutation(_split_indices(labels, split, seed))
    return chosen if n is None else chosen[:n]


def build_animal_asset(out: Path = ANIMAL_ASSET) -> None:
    """Write the asset from the animal-mnist package (needs it installed)."""
    folder = _package_data()
    if folder is None:
        raise MissingDependencyError(
            "Building the animal asset needs the 'animal_mnist' package: "
            "pip install --no-deps animal-mnist"
        )
    images, labels = _read_package(folder)
    wanted = [
        _chosen(np.random.default_rng([seed, 4]), labels, split, n, seed)
        for split, n, seed in ASSET_REQUESTS
    ]
    indices = np.unique(np.concatenate(wanted)).astype(np.uint16)
    out.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(
        out, images=images[indices], labels=labels.astype(np.uint8), indices=indices
    )


def _split_indices(labels: np.ndarray, split: Split, seed: int) -> np.ndarray:
    rng = np.random.default_rng([seed, 3])
    held = np.zeros(len(labels), dtype=bool)
    for label in range(len(ANIMAL_NAMES)):
        idx = rng.permutation(np.flatnonzero(labels == label))
        held[idx[: round(len(idx) * HELDOUT_FRACTION)]] = True
    return np.flatnonzero(held if split == "heldout" else ~held)


def animal_samples(
    split: Split = "train",
    n: int | None = None,
    seed: int = 0,
    size: int = DEFAULT_IMAGE_SIZE,
    lang: Language = "en",
) -> list[Sample]:
    """Animal silhouettes of one split, with captions.

    Args:
        split: "train" (80 % of each animal) or "heldout" (the other 20 %).
        n: take at most this many, spread over the animals (the split's order is shuffled by
            `seed`); None takes the whole split.
        seed: fixes the split, the order and the caption templates.
        size: the image side in pixels.
        lang: the caption language; the images do not depend on it.

    Returns:
        Samples with group "animals" and label the animal's name ("cat").

    Raises:
        MissingDependencyError: the animal-mnist package is not installed and the request is
            not one the bundled asset holds (ASSET_REQUESTS, or fewer of the same).
    """
    check_split(split)
    check_language(lang)
    templates = _TEMPLATES[lang]
    _, labels, _ = _load()
    rng = np.random.default_rng([seed, 4])  # orders the split, then draws the templates
    chosen = _chosen(rng, labels, split, n, seed)
    samples = []
    for i, pixels in zip(chosen, _images_at(chosen), strict=True):
        name = ANIMAL_NAMES[int(labels[i])]
        template = templates[0] if split == "heldout" else templates[rng.integers(len(templates))]
        image = Image.fromarray(pixels).resize((size, size), Image.Resampling.BICUBIC)
        samples.append(
            Sample(
                image=image.convert("RGB"),
                caption=_caption(template, name, lang),
                label=name,
                group="animals",
            )
        )
    return samples
