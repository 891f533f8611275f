"""Where the local caches keep CLIP weights: the Hugging Face cache (open_clip's hf-hub repos
and tags) and `~/.cache/clip` (open_clip's URL downloads, OpenAI's weights, and cn_clip's).

Read by model resolution (a cached file means no network) and by the `models` listing.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

__all__ = ["cached_hf_snapshot", "cached_tag_file", "clip_cache", "find_weights"]


def clip_cache() -> Path:
    """`~/.cache/clip`, read when asked (HOME may change between calls, as in tests)."""
    return Path("~/.cache/clip").expanduser()


def find_weights(path: Path) -> Path | None:
    """The weights file in an open_clip model folder, found the way open_clip finds it."""
    from open_clip.factory import _find_checkpoint_in_dir

    found = _find_checkpoint_in_dir(path)
    return Path(found) if found else None


def cached_hf_snapshot(repo: str) -> Path | None:
    """The cached snapshot folder holding both the config and weights of an hf-hub model."""
    from huggingface_hub import try_to_load_from_cache

    config = try_to_load_from_cache(repo, "open_clip_config.json")
    if not isinstance(config, str):
        return None
    snapshot = Path(config).parent
    return snapshot if find_weights(snapshot) is not None else None


def cached_tag_file(cfg: dict[str, Any]) -> Path | None:
    """The cached weights file of an open_clip pretrained tag (its hub repo, else its URL)."""
    hub = cfg.get("hf_hub", "")
    if hub:
        from huggingface_hub import try_to_load_from_cache

        repo, filename = os.path.split(hub)
        names = [filename] if filename else []
        names += ["open_clip_model.safetensors", "open_clip_pytorch_model.bin"]
        for candidate in _with_safetensors_first(names):
            found = try_to_load_from_cache(repo, candidate)
            if isinstance(found, str):
                return Path(found)
    url = str(cfg.get("url", ""))
    if url:
        target = clip_cache() / os.path.basename(url)
        if target.is_file():
            return target
    return None


def _with_safetensors_first(names: list[str]) -> list[str]:
    safe = [n[: n.rfind(".")] + ".safetensors" for n in names if n.endswith((".bin", ".pth"))]
    return list(dict.fromkeys(safe + names))
