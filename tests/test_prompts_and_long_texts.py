"""Templates are filled without str.format, and long texts are cut before tokenizing.

Both run on the real demo model: the library's classify and embed_texts are the paths the
server, the adapters and users share.
"""

from __future__ import annotations

import time
import warnings
from typing import Any

import numpy as np
import pytest

from clip_multimodal.errors import TemplateError
from clip_multimodal.text import MAX_TOKEN_CHARS, fill_template, head_of_text

BAD_TEMPLATES = [
    "{}{}",
    "{} {x}",
    "{0}",
    "{{}}{:>50000000}",
    "{:>50000000}",
    "a photo of {label}",
    "no placeholder",
    "{} and a stray {",
    "{} and a stray }",
    "{!r}",
]


@pytest.mark.parametrize("template", BAD_TEMPLATES)
def test_a_template_needs_exactly_one_placeholder_and_nothing_else(template: str) -> None:
    with pytest.raises(TemplateError, match="template"):
        fill_template(template, "cat")


def test_a_template_is_filled_literally() -> None:
    assert fill_template("a photo of a {}.", "cat") == "a photo of a cat."
    # The label is inserted as is: braces in it are not formatted again.
    assert fill_template("a {}", "{0} {x}") == "a {0} {x}"
    assert fill_template(lambda c: f"itap of a {c}.", "dog") == "itap of a dog."


def test_classify_refuses_a_format_bomb_at_once(demo_encoder: Any) -> None:
    image = np.full((32, 32, 3), 200, np.uint8)
    started = time.perf_counter()
    with pytest.raises(TemplateError):
        demo_encoder.classify([image], ["a", "b"], ["{{}}{:>50000000}"] * 4)
    assert time.perf_counter() - started < 1.0
    probs = demo_encoder.classify([image], ["a", "b"], ["a photo of {}"])
    assert probs.shape == (1, 2)


# -- long texts ------------------------------------------------------------------------------

WORDS = "the quick brown fox jumps over the lazy dog near a red circle and a blue square "


def _open_clip_vector(encoder: Any, text: str) -> np.ndarray:
    """The reference: open_clip's own tokenizer on the whole text, then the model."""
    import torch

    tokens = encoder.tokenizer([text])
    with torch.inference_mode():
        features = encoder.model.encode_text(tokens.to(encoder.device)).float()
    out: np.ndarray = torch.nn.functional.normalize(features, dim=-1).cpu().numpy()
    return out[0]


@pytest.mark.parametrize(
    "text",
    [
        WORDS * 1500,  # 120k characters of words
        "a"
        + " " * 100_000
        + WORDS * 40,  # long runs of whitespace collapse, as CLIP's cleaner does
        ("\n\n" + WORDS) * 1500,
        "x" * 120_000,  # one endless word
    ],
    ids=["words", "whitespace-run", "lines", "one-word"],
)
def test_a_cut_long_text_embeds_exactly_like_the_whole_text(demo_encoder: Any, text: str) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # the truncation warning
        ours = demo_encoder.embed_texts([text])[0]
    np.testing.assert_allclose(ours, _open_clip_vector(demo_encoder, text), atol=1e-6)


def test_short_texts_are_not_touched() -> None:
    text = "a  red\n\ncircle   " * 10
    assert head_of_text(text, 77) == text


def test_the_cut_keeps_more_than_the_context_can_hold(demo_encoder: Any) -> None:
    head = head_of_text(WORDS * 2000, demo_encoder.context_length)
    assert len(head) == demo_encoder.context_length * MAX_TOKEN_CHARS
    assert len(demo_encoder.tokenizer.encode(head)) > 2 * demo_encoder.context_length


def test_the_bound_covers_the_longest_token_of_the_vocabulary(demo_encoder: Any) -> None:
    encoder = demo_encoder.tokenizer.encoder  # open_clip's SimpleTokenizer: token -> id
    longest = max(len(t.removesuffix("</w>")) for t in encoder)
    assert longest < MAX_TOKEN_CHARS


def test_long_texts_cost_about_what_context_filling_texts_cost(demo_encoder: Any) -> None:
    def seconds(texts: list[str]) -> float:
        started = time.perf_counter()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)
            demo_encoder.embed_texts(texts)
        return time.perf_counter() - started

    full = seconds([WORDS * 8 + str(i) for i in range(64)])  # just over 77 tokens each
    long = seconds([WORDS * 1500 + str(i) for i in range(64)])  # 7.7M characters in all
    assert long < 3 * full + 1.0, f"{long:.1f}s for long texts, {full:.1f}s for full ones"


def test_a_cut_text_still_warns_about_truncation(demo_encoder: Any) -> None:
    with pytest.warns(UserWarning, match="truncated"):
        demo_encoder.embed_texts([WORDS * 1500])
