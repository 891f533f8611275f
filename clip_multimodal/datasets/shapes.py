"""Procedural coloured shapes with compositional captions, drawn with PIL.

Each image shows one shape described by colour x shape x size on a dark or light background:
"a small red circle on a dark background", or in Chinese "深色背景上一个红色的小圆形". A fixed list of colour x shape x size combinations,
HELDOUT_COMBOS, never appears in the train split, so retrieval on the held-out split measures
whether a model composes attributes it has only seen apart.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np
from PIL import Image, ImageDraw

from clip_multimodal.datasets._sample import (
    DEFAULT_IMAGE_SIZE,
    Language,
    Sample,
    Split,
    check_language,
    check_split,
)

__all__ = [
    "BACKGROUNDS",
    "COLOURS",
    "HELDOUT_COMBOS",
    "SHAPES",
    "SIZES",
    "Combo",
    "combo_query",
    "draw_shape",
    "shapes_samples",
    "train_combos",
]

COLOURS: dict[str, tuple[int, int, int]] = {
    "red": (220, 30, 30),
    "green": (40, 180, 50),
    "blue": (40, 70, 230),
    "yellow": (240, 220, 40),
    "purple": (150, 50, 200),
    "orange": (250, 140, 20),
}
SHAPES: tuple[str, ...] = ("circle", "square", "triangle", "star", "cross")
#: Radius as a fraction of the image side: (low, high) for each size word.
SIZES: dict[str, tuple[float, float]] = {"small": (0.12, 0.17), "large": (0.28, 0.36)}
#: Grey level ranges of the background.
BACKGROUNDS: dict[str, tuple[int, int]] = {"dark": (0, 45), "light": (205, 255)}


class Combo(NamedTuple):
    """One colour x shape x size combination."""

    colour: str
    shape: str
    size: str

    @property
    def label(self) -> str:
        """The relevance key: "small red circle"."""
        return f"{self.size} {self.colour} {self.shape}"


#: Never drawn in the train split. Every colour, shape and size still appears in training
#: through other combinations, so these test composition rather than unseen words.
HELDOUT_COMBOS: tuple[Combo, ...] = (
    Combo("red", "circle", "small"),
    Combo("green", "square", "large"),
    Combo("blue", "triangle", "small"),
    Combo("yellow", "star", "large"),
    Combo("purple", "cross", "small"),
    Combo("orange", "circle", "large"),
    Combo("red", "star", "small"),
    Combo("blue", "cross", "large"),
)

#: The caption templates of each language, the same meanings in the same order (the template
#: draw must not depend on the language, so both languages get the same images). The second
#: is the query form.
_TEMPLATES: dict[Language, tuple[str, ...]] = {
    "en": (
        "a {size} {colour} {shape} on a {bg} background",
        "a {size} {colour} {shape}",
        "a picture of a {size} {colour} {shape}",
        "a {colour} {shape}, {size}, on a {bg} background",
    ),
    "zh": (
        "{bg}背景上一个{colour}的{size}{shape}",
        "一个{colour}的{size}{shape}",
        "一张{colour}{size}{shape}的图片",
        "{size}的{colour}{shape}，{bg}背景",
    ),
}
#: The Chinese words for the English colour, shape, size and background names.
_ZH_WORDS: dict[str, str] = {
    "red": "红色",
    "green": "绿色",
    "blue": "蓝色",
    "yellow": "黄色",
    "purple": "紫色",
    "orange": "橙色",
    "circle": "圆形",
    "square": "正方形",
    "triangle": "三角形",
    "star": "星形",
    "cross": "十字形",
    "small": "小",
    "large": "大",
    "dark": "深色",
    "light": "浅色",
}


def train_combos() -> list[Combo]:
    """Every combination except HELDOUT_COMBOS."""
    held = set(HELDOUT_COMBOS)
    every = [Combo(c, s, z) for c in COLOURS for s in SHAPES for z in SIZES]
    return [combo for combo in every if combo not in held]


def _caption(template: str, combo: Combo, bg: str, lang: Language) -> str:
    words = {"size": combo.size, "colour": combo.colour, "shape": combo.shape, "bg": bg}
    if lang == "zh":
        words = {key: _ZH_WORDS[word] for key, word in words.items()}
    return template.format(**words)


def combo_query(combo: Combo, lang: Language = "en") -> str:
    """The text query used to retrieve a combination: "a small red circle", "一个红色的小圆形"."""
    check_language(lang)
    return _caption(_TEMPLATES[lang][1], combo, "dark", lang)  # names no background


def _polygon(shape: str, cx: float, cy: float, r: float, angle: float) -> list[tuple[float, float]]:
    """Vertices of a polygonal shape of circumradius r, rotated by angle (radians)."""
    if shape == "square":
        radii, count = [r * 0.85], 4
        angle += math.pi / 4
    elif shape == "triangle":
        radii, count = [r], 3
        angle -= math.pi / 2
    elif shape == "star":
        radii, count = [r, r * 0.42], 10
        angle -= math.pi / 2
    else:  # cross: a plus sign, 12 vertices on two alternating radii
        return _cross(cx, cy, r, angle)
    points = []
    for i in range(count):
        a = angle + 2 * math.pi * i / count
        rr = radii[i % len(radii)]
        points.append((cx + rr * math.cos(a), cy + rr * math.sin(a)))
    return points


def _cross(cx: float, cy: float, r: float, angle: float) -> list[tuple[float, float]]:
    w = r * 0.33
    outline = [(w, r), (w, w), (r, w), (r, -w), (w, -w), (w, -r)]
    outline += [(-w, -r), (-w, -w), (-r, -w), (-r, w), (-w, w), (-w, r)]
    cos, sin = math.cos(angle), math.sin(angle)
    return [(cx + x * cos - y * sin, cy + x * sin + y * cos) for x, y in outline]


def draw_shape(
    combo: Combo, background: str, rng: np.random.Generator, size: int = DEFAULT_IMAGE_SIZE
) -> Image.Image:
    """Draw one shape with random position, radius, rotation and colour jitter.

    Drawn at twice the size and downsampled, so edges are anti-aliased like a real picture.
    """
    scale = 2
    side = size * scale
    lo, hi = BACKGROUNDS[background]
    grey = int(rng.integers(lo, hi + 1))
    tint = rng.integers(-8, 9, size=3)
    bg = tuple(int(v) for v in np.clip(grey + tint, 0, 255))
    img = Image.new("RGB", (side, side), bg)
    r = float(rng.uniform(*SIZES[combo.size])) * side
    cx, cy = (float(rng.uniform(r, side - r)) for _ in range(2))
    jitter = rng.integers(-20, 21, size=3)
    fill = tuple(int(v) for v in np.clip(np.array(COLOURS[combo.colour]) + jitter, 0, 255))
    draw = ImageDraw.Draw(img)
    if combo.shape == "circle":
        draw.ellipse((cx - r, cy - r, cx + r, cy + r), fill=fill)
    else:
        angle = float(rng.uniform(-0.3, 0.3))
        draw.polygon(_polygon(combo.shape, cx, cy, r, angle), fill=fill)
    return img.resize((size, size), Image.Resampling.LANCZOS)


def shapes_samples(
    split: Split = "train",
    n: int = 1000,
    seed: int = 0,
    size: int = DEFAULT_IMAGE_SIZE,
    lang: Language = "en",
) -> list[Sample]:
    """Generate `n` shape images with captions, deterministically from `seed`.

    Args:
        split: "train" draws only combinations outside HELDOUT_COMBOS; "heldout" draws only
            HELDOUT_COMBOS, cycling through them so each gets the same number of images.
        n: how many samples.
        seed: the random seed; the same seed gives the same images and captions.
        size: the image side in pixels.
        lang: the caption language; the images do not depend on it.

    Returns:
        Samples with group "shapes" and label like "small red circle". Held-out captions use
        the first (full) template; train captions vary the template.
    """
    check_split(split)
    check_language(lang)
    templates = _TEMPLATES[lang]
    rng = np.random.default_rng([seed, 0 if split == "train" else 1])
    combos = list(HELDOUT_COMBOS) if split == "heldout" else train_combos()
    backgrounds = list(BACKGROUNDS)
    samples = []
    for i in range(n):
        combo = combos[i % len(combos)] if split == "heldout" else combos[rng.integers(len(combos))]
        bg = backgrounds[int(rng.integers(len(backgrounds)))]
        template = templates[0] if split == "heldout" else templates[rng.integers(len(templates))]
        caption = _caption(template, combo, bg, lang)
        image = draw_shape(combo, bg, rng, size)
        samples.append(Sample(image=image, caption=caption, label=combo.label, group="shapes"))
    return samples
