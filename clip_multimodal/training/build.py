"""The model a training run starts from, with what it takes to save it as `local-dir:`.

Any model id the encoder accepts works (an architecture with a pretrained tag or weights file,
`hf-hub:` from the local cache, `local-dir:`), resolved offline-first by clip_multimodal.models.
An architecture without weights, or an architecture JSON file, starts from random weights
(training from scratch).
"""

from __future__ import annotations

import json
import logging
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from clip_multimodal.errors import ModelNotAvailableError
from clip_multimodal.models import CN_CLIP, LOCAL_DIR, TRANSFORMERS, resolve_model

__all__ = ["BuiltModel", "build_model", "read_architecture"]


@dataclass
class BuiltModel:
    """A trainable open_clip model and its companions.

    Attributes:
        model: the model, float32, in train mode, on the CPU.
        train_transform: open_clip's training preprocess (random resized crop).
        eval_transform: open_clip's inference preprocess (what the encoder uses).
        tokenizer: the model's tokenizer.
        model_cfg: the architecture, as open_clip's model config.
        preprocess_cfg: the image preprocessing the model expects.
        description: where the weights came from, for the log.
    """

    model: Any
    train_transform: Any
    eval_transform: Any
    tokenizer: Any
    model_cfg: dict[str, Any]
    preprocess_cfg: dict[str, Any]
    description: str


def read_architecture(path: Path) -> dict[str, Any]:
    """An architecture JSON: open_clip's local-dir config ({"model_cfg", "preprocess_cfg"}) or
    a bare model config ({"embed_dim", "vision_cfg", "text_cfg"})."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ModelNotAvailableError(f"cannot read the architecture file {path}: {exc}") from exc
    cfg = data.get("model_cfg", data) if isinstance(data, dict) else None
    if not isinstance(cfg, dict) or not {"embed_dim", "vision_cfg", "text_cfg"} <= cfg.keys():
        raise ModelNotAvailableError(
            f"{path} is not an open_clip architecture: it needs embed_dim, vision_cfg and "
            'text_cfg (or {"model_cfg": {...}, "preprocess_cfg": {...}})'
        )
    return {"model_cfg": cfg, "preprocess_cfg": data.get("preprocess_cfg", {})}


def _preprocess_cfg(model: Any) -> dict[str, Any]:
    """The model's preprocessing as plain JSON values (a square size as one number)."""
    cfg = {
        k: list(v) if isinstance(v, tuple) else v for k, v in model.visual.preprocess_cfg.items()
    }
    size = cfg.get("size")
    if isinstance(size, list) and len(set(size)) == 1:
        cfg["size"] = size[0]
    return cfg


def _create(open_clip_name: str, pretrained: str | None, **kwargs: Any) -> tuple[Any, ...]:
    import open_clip

    model, train_t, eval_t = open_clip.create_model_and_transforms(
        open_clip_name, pretrained=pretrained, precision="fp32", **kwargs
    )
    return model, train_t, eval_t, open_clip.get_tokenizer(open_clip_name)


def _from_architecture_file(path: Path) -> BuiltModel:
    arch = read_architecture(path)
    with tempfile.TemporaryDirectory(prefix="clip-arch-") as tmp:
        config = {"model_name": path.stem, **arch}
        (Path(tmp) / "open_clip_config.json").write_text(json.dumps(config), encoding="utf-8")
        # A local-dir folder without weights: open_clip builds the architecture, randomly
        # initialised (no global model registry is touched). Its "no weights found" warnings
        # are exactly what we asked for, so they are silenced for this call.
        logging.disable(logging.WARNING)
        try:
            model, train_t, eval_t, tokenizer = _create(f"{LOCAL_DIR}{tmp}", None)
        finally:
            logging.disable(logging.NOTSET)
    return BuiltModel(
        model,
        train_t,
        eval_t,
        tokenizer,
        arch["model_cfg"],
        _preprocess_cfg(model),
        f"architecture {path}, random initialisation (training from scratch)",
    )


def build_model(model: str, pretrained: str | None = None) -> BuiltModel:
    """Build the model to train.

    Args:
        model: an encoder model id (`ViT-B-32`, `hf-hub:org/repo`, `local-dir:PATH`) or the path
            of an architecture JSON file (training from scratch).
        pretrained: with an architecture name: a pretrained tag or weights file; None starts
            from random weights.

    Raises:
        ModelNotAvailableError: unknown model, or weights neither local nor reachable.
    """
    if model.endswith(".json") and not model.startswith(LOCAL_DIR):
        path = Path(model).expanduser()
        if not path.is_file():
            raise ModelNotAvailableError(f"architecture file not found: {path}")
        return _from_architecture_file(path)
    if model.startswith((TRANSFORMERS, CN_CLIP)):
        raise ModelNotAvailableError(
            f"train fine-tunes open_clip models; {model} is another family's checkpoint "
            "(it embeds and searches, but cannot be trained here)"
        )
    resolved = resolve_model(model, None if model.startswith(LOCAL_DIR) else pretrained)
    name = resolved.open_clip_name
    built, train_t, eval_t, tokenizer = _create(name, resolved.pretrained, **resolved.create_kwargs)
    if name.startswith(LOCAL_DIR):
        config = json.loads((Path(name[len(LOCAL_DIR) :]) / "open_clip_config.json").read_text())
        model_cfg = dict(config["model_cfg"])
    else:
        import open_clip

        model_cfg = dict(open_clip.get_model_config(name) or {})
        if resolved.create_kwargs.get("force_quick_gelu"):
            model_cfg["quick_gelu"] = True
    weights = "random initialisation (training from scratch)"
    if resolved.pretrained or name.startswith(LOCAL_DIR):
        weights = f"weights {resolved.model_id}"
    return BuiltModel(
        built,
        train_t,
        eval_t,
        tokenizer,
        model_cfg,
        _preprocess_cfg(built),
        f"{model}: {weights}",
    )
