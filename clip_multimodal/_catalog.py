"""What `clip-multimodal models` lists: the families of model names, and the weights already in
the local caches (the Hugging Face cache, `~/.cache/clip` of open_clip and cn_clip, the demo
model), each with its model_id, its dimension (read from its config: nothing is loaded) and
whether it loads offline.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from clip_multimodal._caches import cached_tag_file, clip_cache, find_weights
from clip_multimodal.models import (
    DEMO_MODEL_NAME,
    OPENAI_NAMES,
    resolve_hf_snapshot,
    resolve_model,
)

__all__ = ["FAMILIES", "CachedModel", "Family", "cached_models"]


@dataclass(frozen=True)
class Family:
    """A family of weights and the form of its names."""

    family: str
    form: str
    example: str


FAMILIES = (
    Family("open_clip", "ARCH with pretrained TAG or a weights FILE", "ViT-B-32 laion2b_s34b_b79k"),
    Family("openai", f"OpenAI's names: {', '.join(OPENAI_NAMES)}", "ViT-B/32 (pretrained openai)"),
    Family("hf-hub", "hf-hub:ORG/REPO (an open_clip repo)", "hf-hub:timm/ViT-B-16-SigLIP"),
    Family("local-dir", "local-dir:PATH (open_clip_config.json + weights)", "local-dir:./my-clip"),
    Family(
        "transformers",
        "transformers:ORG/REPO[@REVISION] or transformers:PATH (clip, siglip, chinese_clip)",
        "transformers:openai/clip-vit-base-patch32",
    ),
    Family("cn-clip", "cn-clip:ARCH, pretrained FILE optional", "cn-clip:ViT-B-16"),
    Family("demo", DEMO_MODEL_NAME, f"{DEMO_MODEL_NAME} (bundled, offline)"),
)

#: transformers model types whose CLIP towers the transformers family loads.
_TRANSFORMERS_TYPES = ("clip", "siglip", "chinese_clip")
_TOKENIZER_FILES = ("tokenizer.json", "vocab.json", "vocab.txt", "spiece.model", "tokenizer.model")


@dataclass(frozen=True)
class CachedModel:
    """Weights found in a local cache. `model` (with `pretrained`) is how to load them;
    `model_id` is None when they cannot load offline (`missing` says what is missing)."""

    model: str
    pretrained: str | None
    family: str
    model_id: str | None
    dimension: int | None
    offline: bool
    path: str
    missing: str = ""


def cached_models() -> list[CachedModel]:
    """Every model whose weights are in the local caches, the demo model first."""
    return [_demo(), *_hf_cache(), *_clip_cache()]


def _demo() -> CachedModel:
    resolved = resolve_model(DEMO_MODEL_NAME, None)
    folder = Path(resolved.open_clip_name.split(":", 1)[1])
    dim = _open_clip_dim(folder / "open_clip_config.json")
    return CachedModel(DEMO_MODEL_NAME, None, "demo", resolved.model_id, dim, True, str(folder))


# -- the Hugging Face cache -----------------------------------------------------------------


def _hf_cache() -> Iterator[CachedModel]:
    from huggingface_hub import constants

    root = Path(constants.HF_HUB_CACHE)
    for entry in sorted(root.glob("models--*")):
        repo = "/".join(entry.name.split("--")[1:])
        snapshot = _main_snapshot(entry)
        if snapshot is None:
            continue
        if (snapshot / "open_clip_config.json").is_file():
            yield from _open_clip_repo(repo, snapshot)
        elif (snapshot / "config.json").is_file():
            yield from _transformers_repo(repo, snapshot)


def _main_snapshot(entry: Path) -> Path | None:
    """The snapshot `main` points to (what a load without a revision reads)."""
    ref = entry / "refs" / "main"
    if not ref.is_file():
        return None
    snapshot = entry / "snapshots" / ref.read_text(encoding="utf-8").strip()
    return snapshot if snapshot.is_dir() else None


def _open_clip_repo(repo: str, snapshot: Path) -> Iterator[CachedModel]:
    tags = _tags_by_repo().get(repo)
    if tags:  # the repo of open_clip pretrained tags: named by architecture and tag
        yield from (_tag(arch, tag, str(snapshot)) for arch, tag in tags)
        return
    dim = _open_clip_dim(snapshot / "open_clip_config.json")
    if find_weights(snapshot) is None:
        yield CachedModel(
            f"hf-hub:{repo}", None, "hf-hub", None, dim, False, str(snapshot), "weights"
        )
        return
    resolved = resolve_hf_snapshot(repo, snapshot)
    yield CachedModel(f"hf-hub:{repo}", None, "hf-hub", resolved.model_id, dim, True, str(snapshot))


def _transformers_repo(repo: str, snapshot: Path) -> Iterator[CachedModel]:
    config = _read_json(snapshot / "config.json")
    kind = config.get("model_type")
    if kind not in _TRANSFORMERS_TYPES:
        return
    missing = [
        what
        for what, present in (
            ("weights", any(snapshot.glob("*.safetensors")) or any(snapshot.glob("*.bin"))),
            ("tokenizer", any((snapshot / name).is_file() for name in _TOKENIZER_FILES)),
        )
        if not present
    ]
    model = f"transformers:{repo}"
    model_id = None if missing else f"{model}@{snapshot.name}"  # a snapshot is named by its commit
    dim = _transformers_dim(config)
    offline = not missing
    yield CachedModel(
        model, None, "transformers", model_id, dim, offline, str(snapshot), ", ".join(missing)
    )


def _transformers_dim(config: dict[str, Any]) -> int | None:
    if config.get("model_type") == "siglip":  # no projection: the towers' width
        text = config.get("text_config") or {}
        return int(text.get("projection_size") or text.get("hidden_size") or 768)
    return int(config.get("projection_dim") or 512)


# -- ~/.cache/clip: open_clip's URL downloads (OpenAI's weights) and cn_clip's ---------------


def _clip_cache() -> Iterator[CachedModel]:
    root = clip_cache()
    if not root.is_dir():
        return
    by_file = _tags_by_url_file()
    cn_clip = _cn_clip_files()
    for path in sorted(root.iterdir()):
        for arch, tag in by_file.get(path.name, ()):
            yield _tag(arch, tag, str(path))
        if path.name in cn_clip:
            yield _cn_clip(cn_clip[path.name], path)


def _cn_clip_files() -> dict[str, str]:
    """cn_clip's checkpoint file names -> their architecture (empty without cn_clip)."""
    import importlib.util

    if importlib.util.find_spec("cn_clip") is None:
        return {}
    from cn_clip.clip.utils import _MODELS

    return {filename: arch for arch, (_, filename) in _MODELS.items()}


def _cn_clip(arch: str, path: Path) -> CachedModel:
    import cn_clip

    config = Path(cn_clip.__file__).parent / "clip" / "model_configs" / f"{arch}.json"
    dim = int(_read_json(config).get("embed_dim", 0)) or None
    model_id = f"cn-clip:{arch}/{path.name}"  # as loading cn-clip:ARCH names it
    return CachedModel(f"cn-clip:{arch}", None, "cn-clip", model_id, dim, True, str(path))


# -- open_clip's pretrained tags --------------------------------------------------------------


def _tag(arch: str, tag: str, path: str) -> CachedModel:
    import open_clip

    offline = cached_tag_file(open_clip.get_pretrained_cfg(arch, tag)) is not None
    config = open_clip.get_model_config(arch) or {}
    dim = int(config["embed_dim"]) if "embed_dim" in config else None
    model_id = f"{arch}/{tag}" if offline else None
    return CachedModel(
        arch, tag, "open_clip", model_id, dim, offline, path, "" if offline else "weights"
    )


def _tags_by_repo() -> dict[str, list[tuple[str, str]]]:
    found: dict[str, list[tuple[str, str]]] = {}
    for arch, tag, cfg in _pretrained():
        if cfg.get("hf_hub"):
            found.setdefault(os.path.split(cfg["hf_hub"])[0], []).append((arch, tag))
    return found


def _tags_by_url_file() -> dict[str, list[tuple[str, str]]]:
    found: dict[str, list[tuple[str, str]]] = {}
    for arch, tag, cfg in _pretrained():
        if cfg.get("url"):
            found.setdefault(cfg["url"].rsplit("/", 1)[-1], []).append((arch, tag))
    return found


def _pretrained() -> Iterator[tuple[str, str, dict[str, Any]]]:
    import open_clip

    for arch, tag in open_clip.list_pretrained():
        yield arch, tag, open_clip.get_pretrained_cfg(arch, tag)


# -- configs ----------------------------------------------------------------------------------


def _open_clip_dim(config: Path) -> int | None:
    embed_dim = (_read_json(config).get("model_cfg") or {}).get("embed_dim")
    return int(embed_dim) if embed_dim else None


def _read_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}
