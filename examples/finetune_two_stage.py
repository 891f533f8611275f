"""Teach the demo model a second language with Chinese-CLIP's two-stage fine-tuning.

    python examples/finetune_two_stage.py [--work-dir DIR] [--english-share 0.25]

The bundled demo model knows English shape captions ("a small red circle"). Here it learns
French ones ("un petit cercle rouge", "une grande étoile bleue") from a CSV:

1. shape images are drawn and written with French captions into train.csv and val.csv (plus a
   share of English captions, so the old vocabulary is rehearsed rather than overwritten);
2. `clip-multimodal train --two-stage` runs stage 1 with the image tower locked (LiT: the text
   tower learns to map French onto the image embeddings it already has), switches to stage 2
   (everything unlocked, a lower learning rate) when validation recall stops improving, and
   stops when it plateaus again;
3. recall on fresh images is measured before and after, with French and with English queries:
   the new captions should rise a lot while the old ones keep working.
"""

from __future__ import annotations

import argparse
import csv
import json
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

#: (masculine, feminine) forms: French adjectives agree with the shape's gender.
COLOURS_FR = {
    "red": ("rouge", "rouge"),
    "green": ("vert", "verte"),
    "blue": ("bleu", "bleue"),
    "yellow": ("jaune", "jaune"),
    "purple": ("violet", "violette"),
    "orange": ("orange", "orange"),
}
SIZES_FR = {"small": ("petit", "petite"), "large": ("grand", "grande")}
#: shape -> (noun, is feminine)
SHAPES_FR = {
    "circle": ("cercle", False),
    "square": ("carré", False),
    "triangle": ("triangle", False),
    "star": ("étoile", True),
    "cross": ("croix", True),
}
BACKGROUNDS_FR = {"dark": "sombre", "light": "clair"}
TEMPLATES_FR = ("{np}", "{np} sur un fond {bg}", "une image : {np}")
TEMPLATES_EN = ("{np}", "{np} on a {bg} background", "a picture of {np}")


def french(combo: Any) -> str:
    """The French noun phrase of a combination: "une petite étoile rouge"."""
    noun, feminine = SHAPES_FR[combo.shape]
    form = int(feminine)
    article = "une" if feminine else "un"
    return f"{article} {SIZES_FR[combo.size][form]} {noun} {COLOURS_FR[combo.colour][form]}"


def english(combo: Any) -> str:
    """The query the demo model was trained with: "a small red circle"."""
    from clip_multimodal.datasets import combo_query

    return combo_query(combo)


def draw(n: int, seed: int) -> list[tuple[Any, str, Any]]:
    """n (combo, background, image) triples over the combinations the demo model trained on."""
    from clip_multimodal.datasets import train_combos
    from clip_multimodal.datasets.shapes import BACKGROUNDS, draw_shape

    rng = np.random.default_rng(seed)
    combos, backgrounds = train_combos(), list(BACKGROUNDS)
    out = []
    for i in range(n):
        combo = combos[i % len(combos)]
        bg = backgrounds[int(rng.integers(len(backgrounds)))]
        out.append((combo, bg, draw_shape(combo, bg, rng)))
    return out


def caption(combo: Any, bg: str, rng: np.random.Generator, english_share: float) -> str:
    if rng.random() < english_share:
        np_, template, bg_word = english(combo), TEMPLATES_EN, bg
    else:
        np_, template, bg_word = french(combo), TEMPLATES_FR, BACKGROUNDS_FR[bg]
    return template[int(rng.integers(len(template)))].format(np=np_, bg=bg_word)


def write_csv(path: Path, rows: list[tuple[str, str]]) -> Path:
    with path.open("w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(["filepath", "title"])
        writer.writerows(rows)
    return path


def make_data(work: Path, n_train: int, n_val: int, english_share: float) -> tuple[Path, Path]:
    """train.csv (mixed captions) and val.csv (French queries, one per combination)."""
    images = work / "images"
    images.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(7)
    train_rows, val_rows = [], []
    for i, (combo, bg, image) in enumerate(draw(n_train, seed=11)):
        image.save(images / f"train-{i:05d}.png")
        train_rows.append((f"images/train-{i:05d}.png", caption(combo, bg, rng, english_share)))
    for i, (combo, _, image) in enumerate(draw(n_val, seed=12)):
        image.save(images / f"val-{i:05d}.png")
        val_rows.append((f"images/val-{i:05d}.png", french(combo)))
    return write_csv(work / "train.csv", train_rows), write_csv(work / "val.csv", val_rows)


def recall(model: str, n_images: int = 208) -> dict[str, dict[str, float]]:
    """Recall on fresh images (never trained on), with French and with English captions."""
    from clip_multimodal import CLIPEncoder
    from clip_multimodal.training.metrics import caption_recall

    encoder = CLIPEncoder(model, device="cpu", num_workers=1)
    pool = draw(n_images, seed=99)
    image_emb = encoder.embed_images([image for _, _, image in pool])
    out = {}
    for language, phrase in (("french", french), ("english", english)):
        captions = [phrase(combo) for combo, _, _ in pool]
        text_emb = encoder.embed_texts(captions)
        out[language] = caption_recall(image_emb, text_emb, captions)
    encoder.close()
    return out


def train(work: Path, args: argparse.Namespace) -> Path:
    from clip_multimodal.cli import main as cli
    from clip_multimodal.models import DEMO_MODEL

    train_csv, val_csv = make_data(work, args.n_train, args.n_val, args.english_share)
    output = work / "run"
    argv = ["train", "--model", DEMO_MODEL, "--train-data", str(train_csv)]
    argv += ["--val-data", str(val_csv), "--two-stage", "--lock-image"]
    argv += ["--epochs", str(args.stage1_epochs), "--stage2-max-epochs", str(args.stage2_epochs)]
    argv += ["--patience", "1", "--min-delta", str(args.min_delta)]
    argv += ["--lr", str(args.lr), "--stage2-lr", str(args.stage2_lr), "--warmup", "10"]
    argv += ["--batch-size", "64", "--workers", str(args.workers), "--save-frequency", "0"]
    argv += ["--output", str(output)]
    code = cli(argv)
    if code != 0:
        raise RuntimeError(f"clip-multimodal train exited with {code}")
    return output


def _switches(run: Path) -> list[dict[str, Any]]:
    metrics = json.loads((run / "metrics.json").read_text(encoding="utf-8"))
    return [e for e in metrics["events"] if e["event"] in ("stage_switch", "stop")]


def main(argv: list[str] | None = None) -> dict[str, Any]:
    from clip_multimodal.models import DEMO_MODEL

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "--work-dir", type=Path, help="where to write data and the run (a temp dir)"
    )
    parser.add_argument("--n-train", type=int, default=1536)
    parser.add_argument("--n-val", type=int, default=208)
    parser.add_argument("--english-share", type=float, default=0.25)
    parser.add_argument("--stage1-epochs", type=int, default=6)
    parser.add_argument("--stage2-epochs", type=int, default=3)
    parser.add_argument("--min-delta", type=float, default=0.01)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--stage2-lr", type=float, default=1e-4)
    parser.add_argument("--workers", type=int, default=0)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="finetune-") as tmp:
        work = args.work_dir or Path(tmp)
        before = recall(DEMO_MODEL)
        run = train(work, args)
        after = recall(f"local-dir:{run / 'final'}")
        result: dict[str, Any] = {"before": before, "after": after, "output": str(run)}
        result["events"] = _switches(run)
    for language in ("french", "english"):
        b, a = before[language], after[language]
        print(
            f"{language:8} mean recall {b['mean_recall']:.3f} -> {a['mean_recall']:.3f}   "
            f"text->image R@1 {b['t2i_R@1']:.3f} -> {a['t2i_R@1']:.3f}   "
            f"image->text R@1 {b['i2t_R@1']:.3f} -> {a['i2t_R@1']:.3f}"
        )
    for event in result["events"]:
        print(f"epoch {event['epoch']}: {event['event']} ({event['reason']})")
    return result


if __name__ == "__main__":
    main()
