"""The offline datasets: determinism, held-out separation, captions, and the demo folder."""

from __future__ import annotations

import re
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from clip_multimodal.datasets import (
    ANIMAL_NAMES,
    DIGIT_NAMES,
    HELDOUT_COMBOS,
    animal_query,
    animal_samples,
    combo_query,
    digit_query,
    digit_samples,
    shapes_samples,
    train_combos,
    write_demo_images,
)
from clip_multimodal.datasets.shapes import COLOURS, SHAPES, SIZES


def _pixels(image: Image.Image) -> np.ndarray:
    return np.asarray(image)


def test_shapes_are_deterministic_from_the_seed() -> None:
    a, b = shapes_samples("train", n=20, seed=5), shapes_samples("train", n=20, seed=5)
    assert [s.caption for s in a] == [s.caption for s in b]
    assert all(
        np.array_equal(_pixels(x.image), _pixels(y.image)) for x, y in zip(a, b, strict=True)
    )
    other = shapes_samples("train", n=20, seed=6)
    assert [s.caption for s in a] != [s.caption for s in other]


def test_heldout_combos_never_appear_in_training() -> None:
    held = {c.label for c in HELDOUT_COMBOS}
    train = shapes_samples("train", n=2000, seed=0)
    assert not held & {s.label for s in train}
    heldout = shapes_samples("heldout", n=80, seed=0)
    assert {s.label for s in heldout} == held


def test_every_attribute_is_still_seen_in_training() -> None:
    # Held-out combinations must test composition, not words the model never saw.
    combos = train_combos()
    assert {c.colour for c in combos} == set(COLOURS)
    assert {c.shape for c in combos} == set(SHAPES)
    assert {c.size for c in combos} == set(SIZES)


def test_shape_captions_describe_the_image() -> None:
    for sample in shapes_samples("heldout", n=16, seed=2):
        size, colour, shape = sample.label.split()
        assert sample.caption.startswith(f"a {size} {colour} {shape} on a ")
        pixels = _pixels(sample.image).reshape(-1, 3).astype(int)
        # The named colour is present: some pixel lies near its RGB value.
        distance = np.abs(pixels - np.array(COLOURS[colour])).sum(axis=1)
        assert distance.min() < 80, sample.caption
        assert sample.image.size == (64, 64)
        assert sample.image.mode == "RGB"


def test_small_and_large_shapes_differ_in_area() -> None:
    def area(label: str) -> float:
        samples = [s for s in shapes_samples("heldout", n=64, seed=3) if s.label == label]
        rgb = np.array(COLOURS[label.split()[1]])
        return float(
            np.mean(
                [(np.abs(_pixels(s.image).astype(int) - rgb).sum(-1) < 90).mean() for s in samples]
            )
        )

    assert area("large orange circle") > 3 * area("small red circle")


def test_digits_split_is_stratified_disjoint_and_fixed() -> None:
    train, held = digit_samples("train"), digit_samples("heldout")
    assert len(train) + len(held) == 1797
    assert 0.18 < len(held) / 1797 < 0.22
    assert {s.label for s in held} == set(DIGIT_NAMES)
    train_bytes = {s.image.tobytes() for s in train}
    overlap = sum(s.image.tobytes() in train_bytes for s in held)
    assert overlap <= 2  # load_digits holds a few exact duplicate scans; no split leakage beyond
    assert [s.caption for s in digit_samples("heldout")] == [s.caption for s in held]
    assert held[0].caption == f"a handwritten {held[0].label}"


def test_animals_read_without_tensorflow() -> None:
    import sys

    samples = animal_samples("heldout", n=50, seed=0)
    assert "tensorflow" not in sys.modules
    assert len(samples) == 50
    assert {s.label for s in samples} <= set(ANIMAL_NAMES)
    assert samples[0].caption == f"a silhouette of a {samples[0].label}"
    assert samples[0].image.mode == "RGB"
    assert samples[0].image.size == (64, 64)


def test_animal_splits_partition_the_data() -> None:
    train, held = animal_samples("train"), animal_samples("heldout")
    assert len(train) == 8000
    assert len(held) == 2000
    assert {s.label: 0 for s in held}.keys() == set(ANIMAL_NAMES)


def test_unknown_split_is_rejected() -> None:
    with pytest.raises(ValueError, match="unknown split 'test'"):
        shapes_samples("test", n=1)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("make", "split"),
    [
        (lambda **kw: shapes_samples(n=40, seed=4, **kw), "train"),
        (lambda **kw: shapes_samples(n=16, seed=4, **kw), "heldout"),
        (lambda **kw: digit_samples(seed=4, **kw), "train"),
        (lambda **kw: animal_samples(n=40, seed=4, **kw), "train"),
    ],
)
def test_chinese_captions_come_with_the_same_images(make: Any, split: str) -> None:
    english, chinese = make(split=split), make(split=split, lang="zh")
    assert [s.label for s in english] == [s.label for s in chinese]
    assert all(
        np.array_equal(_pixels(e.image), _pixels(z.image))
        for e, z in zip(english, chinese, strict=True)
    )
    assert all(re.search(r"[\u4e00-\u9fff]", s.caption) for s in chinese)
    assert not any(re.search(r"[a-z]", s.caption) for s in chinese)


def test_chinese_captions_and_queries_name_the_content() -> None:
    combo = HELDOUT_COMBOS[0]  # small red circle
    assert combo_query(combo, "zh") == "一个红色的小圆形"
    assert digit_query("seven", "zh") == "手写的数字七"
    assert animal_query("cat", "zh") == "一只猫的剪影"
    # Held-out captions use the first template, in Chinese too.
    caption = shapes_samples("heldout", n=1, seed=0, lang="zh")[0].caption
    assert caption.endswith("背景上一个红色的小圆形")
    sevens = [s for s in digit_samples("heldout", lang="zh") if s.label == "seven"]
    assert {s.caption for s in sevens} == {"手写的数字七"}
    # The English queries are unchanged by the Chinese ones.
    assert combo_query(combo) == "a small red circle" == combo_query(combo, "en")


def test_unknown_language_is_rejected() -> None:
    with pytest.raises(ValueError, match="unknown caption language 'fr'"):
        digit_samples("heldout", lang="fr")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="unknown caption language 'fr'"):
        animal_query("cat", "fr")  # type: ignore[arg-type]


def test_write_demo_images(tmp_path: Path) -> None:
    start = time.monotonic()
    written = write_demo_images(tmp_path, per_group=12)
    assert time.monotonic() - start < 5
    assert len(written) == 36
    names = {p.relative_to(tmp_path).as_posix() for p, _ in written}
    assert "shapes/red-circle-small-000.png" in names
    assert any(n.startswith("digits/") for n in names)
    assert any(n.startswith("animals/") for n in names)
    for path, caption in written:
        assert path.is_file()
        content = path.stem.rsplit("-", 1)[0].split("-")
        assert all(word in caption for word in content), (path, caption)
        with Image.open(path) as im:
            assert im.size == (64, 64)


# Runs in a fresh interpreter where `import animal_mnist` fails, as after
# `pip install "clip-multimodal[datasets]"`: prints each requested sample's caption and pixels.
_WITHOUT_PACKAGE = """
import hashlib, json, sys
sys.modules["animal_mnist"] = None
from clip_multimodal.datasets import animal_samples
from clip_multimodal.errors import MissingDependencyError
out = {}
for split, n, seed in json.loads(sys.argv[1]):
    out[f"{split}/{n}/{seed}"] = [
        [s.caption, hashlib.sha256(s.image.tobytes()).hexdigest()]
        for s in animal_samples(split, n=n, seed=seed)
    ]
try:
    animal_samples("train", n=5, seed=0)
    out["train"] = "loaded"
except MissingDependencyError as exc:
    out["train"] = str(exc)
print(json.dumps(out))
"""


def test_demo_animals_load_from_the_asset_without_the_package() -> None:
    import hashlib
    import json
    import os
    import subprocess
    import sys

    import clip_multimodal
    from clip_multimodal.datasets.animals import ASSET_REQUESTS

    requests = [*ASSET_REQUESTS, ("heldout", 16, 0)]  # the demo folder takes 16
    env = {**os.environ, "PYTHONPATH": str(Path(clip_multimodal.__file__).parents[1])}
    done = subprocess.run(
        [sys.executable, "-c", _WITHOUT_PACKAGE, json.dumps(requests)],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        check=True,
    )
    without = json.loads(done.stdout)
    for split, n, seed in requests:
        expected = [
            [s.caption, hashlib.sha256(s.image.tobytes()).hexdigest()]
            for s in animal_samples(split, n=n, seed=seed)
        ]
        assert without[f"{split}/{n}/{seed}"] == expected, (split, n, seed)
    assert "pip install --no-deps animal-mnist" in without["train"]


def test_animal_asset_is_the_package_data(tmp_path: Path) -> None:
    from clip_multimodal.datasets.animals import ANIMAL_ASSET, build_animal_asset

    build_animal_asset(tmp_path / "animals.npz")
    with np.load(ANIMAL_ASSET) as shipped, np.load(tmp_path / "animals.npz") as rebuilt:
        for key in ("images", "labels", "indices"):
            assert shipped[key].dtype == rebuilt[key].dtype, key
            assert np.array_equal(shipped[key], rebuilt[key]), key
    assert ANIMAL_ASSET.stat().st_size < 200_000
