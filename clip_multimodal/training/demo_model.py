"""The recipe of the bundled demo model: a small CLIP trained from scratch on offline data.

    python -m clip_multimodal.training.demo_model --out DIR [--seed 0]

trains on the train splits of the shapes, digits and animal-silhouette datasets, saves the model
in open_clip's `local-dir:` format, and prints its text -> image precision@10 on held-out images.
`--bilingual` trains on an English and a Chinese caption of every image (BILINGUAL_RECIPE) and
reports both languages' queries.
"""

from __future__ import annotations

import argparse
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from clip_multimodal.datasets import (
    ANIMAL_NAMES,
    DIGIT_NAMES,
    HELDOUT_COMBOS,
    LANGUAGES,
    Language,
    Sample,
    animal_query,
    animal_samples,
    combo_query,
    digit_query,
    digit_samples,
    shapes_samples,
)
from clip_multimodal.training.checkpoint import save_local_dir
from clip_multimodal.training.data import ShiftAndNormalize, images_to_uint8, tokenize
from clip_multimodal.training.evaluate import precision_at_k
from clip_multimodal.training.loop import PairBatches, TrainConfig, seed_everything, train

__all__ = [
    "BILINGUAL_RECIPE",
    "DEMO_MODEL_CFG",
    "DEMO_PREPROCESS_CFG",
    "DemoRecipe",
    "heldout_groups",
    "heldout_quality",
    "main",
    "model_cfg",
    "shapes_with_distractors",
    "train_demo_model",
]

IMAGE_SIZE = 64
#: A ViT-style CLIP small enough to train on two CPU cores in minutes. The text tower is the
#: standard causal one (argmax pooling) with open_clip's default 49408-token BPE vocabulary,
#: whose embedding table dominates the size, hence the narrow width.
DEMO_MODEL_CFG: dict[str, Any] = {
    "embed_dim": 128,
    "vision_cfg": {
        "image_size": IMAGE_SIZE,
        "patch_size": 16,
        "width": 128,
        "layers": 4,
        "head_width": 32,
        "mlp_ratio": 2.0,
    },
    "text_cfg": {
        "context_length": 32,
        "vocab_size": 49408,
        "width": 128,
        "heads": 4,
        "layers": 3,
        "mlp_ratio": 2.0,
    },
}
DEMO_PREPROCESS_CFG: dict[str, Any] = {
    "size": IMAGE_SIZE,
    "mode": "RGB",
    "mean": [0.48145466, 0.4578275, 0.40821073],
    "std": [0.26862954, 0.26130258, 0.27577711],
    "interpolation": "bicubic",
    "resize_mode": "shortest",
    "fill_color": 0,
}
MODEL_NAME = "clip-multimodal-demo"


@dataclass(frozen=True)
class DemoRecipe:
    """What the demo model is trained on, and how."""

    n_shapes: int = 8000
    digit_repeats: int = 5
    n_animals: int | None = 5000
    #: Every training image is paired once with a caption in each of these languages per epoch.
    languages: tuple[Language, ...] = ("en",)
    #: The text tower's positions (DEMO_MODEL_CFG's by default).
    context_length: int = DEMO_MODEL_CFG["text_cfg"]["context_length"]
    max_shift: int = 4
    train: TrainConfig = field(
        default_factory=lambda: TrainConfig(epochs=4, batch_size=128, lr=1e-3, warmup_steps=100)
    )


#: English and Chinese captions of every image. The byte-level BPE spells a Chinese character
#: as 2-3 tokens, hence 64 positions (about 25 Chinese characters; the longest caption takes 36).
BILINGUAL_RECIPE = DemoRecipe(languages=LANGUAGES, context_length=64)


def model_cfg(recipe: DemoRecipe) -> dict[str, Any]:
    """DEMO_MODEL_CFG with the recipe's context length."""
    return {
        **DEMO_MODEL_CFG,
        "text_cfg": {**DEMO_MODEL_CFG["text_cfg"], "context_length": recipe.context_length},
    }


def _train_samples(recipe: DemoRecipe, seed: int, lang: Language) -> list[Sample]:
    """The recipe's train-split samples; the images are the same in every language."""
    return [
        *shapes_samples("train", n=recipe.n_shapes, seed=seed, lang=lang),
        *digit_samples("train", seed=seed, lang=lang) * recipe.digit_repeats,
        *animal_samples("train", n=recipe.n_animals, seed=seed, lang=lang),
    ]


def _training_batches(recipe: DemoRecipe, seed: int, tokenizer: Any) -> PairBatches:
    """The recipe's train-split samples as shuffled, shift-augmented batches: each image once
    per caption language, so every epoch pairs it with a caption in each."""
    by_lang = [_train_samples(recipe, seed, lang) for lang in recipe.languages]
    images = images_to_uint8([s.image for s in by_lang[0]], IMAGE_SIZE)
    tokens = tokenize(tokenizer, [s.caption for samples in by_lang for s in samples])
    mean, std = DEMO_PREPROCESS_CFG["mean"], DEMO_PREPROCESS_CFG["std"]
    transform = ShiftAndNormalize(mean, std, recipe.max_shift)
    images = images.repeat(len(by_lang), 1, 1, 1)
    return PairBatches(images, tokens, recipe.train.batch_size, transform)


def train_demo_model(
    recipe: DemoRecipe = DemoRecipe(),
    seed: int = 0,
    log: bool = True,
    epoch_dir: Path | None = None,
) -> Any:
    """Train the demo CLIP from scratch and return it (in eval mode).

    Args:
        recipe: the data and hyper-parameters.
        seed: fixes the data, the initialisation and the batch order.
        log: print each epoch's loss and held-out precision@10.
        epoch_dir: if given, save a `local-dir:` checkpoint after every epoch to
            `epoch_dir/epoch-<n>` (long runs on busy machines can be inspected or stopped early).
    """
    import open_clip

    seed_everything(seed)
    cfg = model_cfg(recipe)
    model = open_clip.CLIP(**cfg)
    tokenizer = open_clip.SimpleTokenizer(context_length=recipe.context_length)
    batches = _training_batches(recipe, seed, tokenizer)
    start = time.monotonic()
    preprocess = open_clip.image_transform(
        IMAGE_SIZE, is_train=False, mean=DEMO_PREPROCESS_CFG["mean"], std=DEMO_PREPROCESS_CFG["std"]
    )

    def report(epoch: int, loss: float) -> None:
        if epoch_dir is not None:
            out = epoch_dir / f"epoch-{epoch + 1}"
            save_local_dir(model, cfg, DEMO_PREPROCESS_CFG, out, MODEL_NAME, half=True)
        if log:
            scores = ", ".join(
                f"{lang} {k} {v:.2f}"
                for lang in recipe.languages
                for k, v in heldout_quality(
                    model, preprocess, tokenizer, per_group=160, seed=seed + 1, lang=lang
                ).items()
            )
            elapsed = time.monotonic() - start
            print(
                f"epoch {epoch + 1}/{recipe.train.epochs}: loss {loss:.4f}, held-out p@10 {scores} ({elapsed:.0f} s)",
                flush=True,
            )

    train(model, batches, replace(recipe.train, seed=seed), on_epoch_end=report)
    return model


@torch.no_grad()
def _embed(
    model: Any, preprocess: Any, tokenizer: Any, samples: list[Sample], queries: list[str]
) -> tuple[np.ndarray, np.ndarray]:
    pixels = torch.stack([preprocess(s.image) for s in samples])
    image_emb = torch.cat(
        [model.encode_image(chunk, normalize=True) for chunk in torch.split(pixels, 256)]
    )
    text_emb = model.encode_text(tokenizer(queries), normalize=True)
    return text_emb.numpy(), image_emb.numpy()


def heldout_quality(
    model: Any,
    preprocess: Any,
    tokenizer: Any,
    per_group: int = 400,
    seed: int = 1,
    lang: Language = "en",
) -> dict[str, float]:
    """Text -> image precision@10 on held-out images of each dataset.

    Protocol: shapes use only HELDOUT_COMBOS (never trained on); each query "a small red
    circle" is one held-out combination, and an image is relevant if it shows exactly that
    colour, shape and size. Digits and animals use their held-out splits; the query "a
    handwritten seven" / "a silhouette of a cat" is relevant to images of that class. `lang`
    chooses the queries' language ("一个红色的小圆形", "手写的数字七", "一只猫的剪影"); the
    images are the same.

    Returns:
        {"shapes": p@10, "digits": p@10, "animals": p@10}.
    """
    model.eval()
    out = {}
    for group, (samples, queries) in heldout_groups(per_group, seed, lang).items():
        text_emb, image_emb = _embed(model, preprocess, tokenizer, samples, list(queries.values()))
        out[group] = precision_at_k(
            text_emb, image_emb, list(queries), [s.label for s in samples], k=10
        )
    return out


def heldout_groups(
    per_group: int = 400, seed: int = 1, lang: Language = "en"
) -> dict[str, tuple[list[Sample], dict[str, str]]]:
    """Each dataset's held-out images and its queries by label (`heldout_quality`'s protocol)."""
    return {
        "shapes": (
            shapes_samples("heldout", n=per_group, seed=seed),
            {c.label: combo_query(c, lang) for c in HELDOUT_COMBOS},
        ),
        "digits": (
            digit_samples("heldout")[:per_group],
            {n: digit_query(n, lang) for n in DIGIT_NAMES},
        ),
        "animals": (
            animal_samples("heldout", n=per_group, seed=seed),
            {n: animal_query(n, lang) for n in ANIMAL_NAMES},
        ),
    }


def shapes_with_distractors(
    model: Any,
    preprocess: Any,
    tokenizer: Any,
    per_pool: int = 400,
    seed: int = 1,
    lang: Language = "en",
) -> float:
    """A harder shapes check: held-out queries over held-out AND trained combinations.

    The pool mixes `per_pool` images of HELDOUT_COMBOS with `per_pool` images of trained
    combinations, so a query like "a small red circle" must beat the trained "small red
    square" or "large red circle" the model knows well. Relevant = exactly the queried
    combination.
    """
    model.eval()
    pool = [
        *shapes_samples("heldout", n=per_pool, seed=seed),
        *shapes_samples("train", n=per_pool, seed=seed + 7919),
    ]
    queries = {c.label: combo_query(c, lang) for c in HELDOUT_COMBOS}
    text_emb, image_emb = _embed(model, preprocess, tokenizer, pool, list(queries.values()))
    return precision_at_k(text_emb, image_emb, list(queries), [s.label for s in pool], k=10)


def main(argv: list[str] | None = None) -> int:
    """Train, save and evaluate the demo model (the `make demo-model` command)."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--out", type=Path, required=True, help="folder to write the model into")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--epochs", type=int, default=None, help="override the recipe's epochs")
    parser.add_argument(
        "--threads",
        type=int,
        default=1,
        help="torch CPU threads (1 reproduces the bundled model bit for bit and does not thrash "
        "a shared CPU; 2 is faster on an idle 2-core machine, with float-level differences)",
    )
    parser.add_argument("--epoch-dir", type=Path, default=None, help="save every epoch here too")
    parser.add_argument(
        "--bilingual",
        action="store_true",
        help="train on English and Chinese captions (context 64; about twice the time)",
    )
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    recipe = BILINGUAL_RECIPE if args.bilingual else DemoRecipe()
    if args.epochs is not None:
        recipe = replace(recipe, train=replace(recipe.train, epochs=args.epochs))
    start = time.monotonic()
    model = train_demo_model(recipe, seed=args.seed, epoch_dir=args.epoch_dir)
    print(f"trained in {time.monotonic() - start:.0f} s", flush=True)
    save_local_dir(model, model_cfg(recipe), DEMO_PREPROCESS_CFG, args.out, MODEL_NAME, half=True)
    from clip_multimodal.training.checkpoint import load_local_dir

    loaded, preprocess, tokenizer = load_local_dir(args.out)
    for lang in recipe.languages:
        for group, p10 in heldout_quality(loaded, preprocess, tokenizer, lang=lang).items():
            print(f"held-out text->image precision@10 {lang} {group}: {p10:.3f}", flush=True)
        hard = shapes_with_distractors(loaded, preprocess, tokenizer, lang=lang)
        print(
            f"held-out shapes among trained distractors, precision@10 {lang}: {hard:.3f}",
            flush=True,
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
