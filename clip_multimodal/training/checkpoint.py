"""Save and load models in open_clip's `local-dir:` format.

A folder holds `open_clip_config.json` ({"model_name", "model_cfg", "preprocess_cfg"}) and
`open_clip_model.safetensors`. Loading goes through open_clip's own
`create_model_and_transforms("local-dir:<folder>")`, so a saved folder is exactly what users and
the encoder load.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import save_file

__all__ = ["CONFIG_FILE", "WEIGHTS_FILE", "load_local_dir", "save_local_dir"]

CONFIG_FILE = "open_clip_config.json"
WEIGHTS_FILE = "open_clip_model.safetensors"


def save_local_dir(
    model: torch.nn.Module,
    model_cfg: dict[str, Any],
    preprocess_cfg: dict[str, Any],
    out_dir: str | Path,
    model_name: str,
    half: bool = False,
) -> Path:
    """Write a model as an open_clip `local-dir:` folder.

    Args:
        model: an open_clip model built from `model_cfg`.
        model_cfg: the architecture, as open_clip's model config JSON ("embed_dim",
            "vision_cfg", "text_cfg").
        preprocess_cfg: image preprocessing ("size", "mean", "std", "interpolation", ...).
        out_dir: the folder to write (created if missing; existing files are replaced).
        model_name: a name recorded in the config.
        half: store float tensors as float16 to halve the file; open_clip loads them into the
            model's float32 parameters.

    Returns:
        The folder path.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    config = {"model_name": model_name, "model_cfg": model_cfg, "preprocess_cfg": preprocess_cfg}
    (out / CONFIG_FILE).write_text(json.dumps(config, indent=2) + "\n", encoding="utf-8")
    state = {k: _stored(v, half) for k, v in model.state_dict().items()}
    save_file(state, str(out / WEIGHTS_FILE))
    return out


def _stored(tensor: torch.Tensor, half: bool) -> torch.Tensor:
    tensor = tensor.detach().cpu().contiguous()
    return tensor.half() if half and tensor.is_floating_point() else tensor


def load_local_dir(path: str | Path, device: str = "cpu") -> tuple[Any, Any, Any]:
    """Load a `local-dir:` folder through open_clip.

    Args:
        path: the folder written by `save_local_dir`.
        device: the torch device.

    Returns:
        (model in eval mode, the eval image transform, the tokenizer).
    """
    import open_clip

    from clip_multimodal.models import LOCAL_DIR

    spec = f"{LOCAL_DIR}{Path(path)}"
    model, _, preprocess = open_clip.create_model_and_transforms(spec, device=device)
    model.eval()
    return model, preprocess, open_clip.get_tokenizer(spec)
