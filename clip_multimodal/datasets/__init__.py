"""Offline image-caption datasets: procedural shapes, handwritten digits, animal silhouettes.

Nothing here touches the network. Every generator is deterministic from a seed and has a
"train" and a "heldout" split; the demo model is trained on "train" only.
"""

from __future__ import annotations

from pathlib import Path

from clip_multimodal.datasets._sample import (
    DEFAULT_IMAGE_SIZE,
    LANGUAGES,
    SPLITS,
    Language,
    Sample,
    Split,
)
from clip_multimodal.datasets.animals import ANIMAL_NAMES, animal_query, animal_samples
from clip_multimodal.datasets.digits import DIGIT_NAMES, digit_query, digit_samples
from clip_multimodal.datasets.shapes import (
    HELDOUT_COMBOS,
    Combo,
    combo_query,
    shapes_samples,
    train_combos,
)

__all__ = [
    "ANIMAL_NAMES",
    "DEFAULT_IMAGE_SIZE",
    "DIGIT_NAMES",
    "HELDOUT_COMBOS",
    "LANGUAGES",
    "SPLITS",
    "Combo",
    "Language",
    "Sample",
    "Split",
    "animal_query",
    "animal_samples",
    "combo_query",
    "digit_query",
    "digit_samples",
    "shapes_samples",
    "train_combos",
    "write_demo_images",
]


def _stem(sample: Sample) -> str:
    """A filename stem that names the content: "red-circle-small", "seven", "cat"."""
    if sample.group == "shapes":
        size, colour, shape = sample.label.split()
        return f"{colour}-{shape}-{size}"
    return sample.label


def _demo_samples(per_group: int, seed: int) -> list[Sample]:
    digits = digit_samples("heldout", seed=seed)
    step = max(1, len(digits) // per_group)
    return [
        *shapes_samples("heldout", n=per_group, seed=seed),
        *digits[::step][:per_group],
        *animal_samples("heldout", n=per_group, seed=seed),
    ]


def write_demo_images(out_dir: Path, per_group: int = 16, seed: int = 0) -> list[tuple[Path, str]]:
    """Write a small folder of held-out images (PNG) for demos and tests.

    The files go to `out_dir/<group>/<content>-<nnn>.png`, for example
    `shapes/red-circle-small-000.png`, `digits/seven-003.png`, `animals/cat-001.png`.
    None of them was seen by the demo model in training.

    Args:
        out_dir: the folder to write into (created if missing).
        per_group: how many images of each group (shapes, digits, animals).
        seed: the generator seed.

    Returns:
        (path, caption) for every file written, in a stable order.
    """
    written: list[tuple[Path, str]] = []
    counts: dict[str, int] = {}
    for sample in _demo_samples(per_group, seed):
        stem = _stem(sample)
        key = f"{sample.group}/{stem}"
        index = counts.get(key, 0)
        counts[key] = index + 1
        path = Path(out_dir) / sample.group / f"{stem}-{index:03d}.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        sample.image.save(path)
        written.append((path, sample.caption))
    return written
