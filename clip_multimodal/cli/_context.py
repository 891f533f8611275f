"""What commands share: the usage error, and opening the model and the index from options.

torch, open_clip and chromadb are imported here only inside functions, when a command runs.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from clip_multimodal.encoder import CLIPEncoder
    from clip_multimodal.index import ImageIndex

__all__ = ["UsageError", "data_dir", "open_encoder", "open_index", "parse_where"]


class UsageError(Exception):
    """The command line asks for something impossible (exit status 2)."""


def data_dir(args: argparse.Namespace) -> Path:
    """--data-dir, else the default data dir (`CLIP_MULTIMODAL_DATA_DIR` or per-user)."""
    if args.data_dir:
        return Path(args.data_dir).expanduser()
    from clip_multimodal.index import default_data_dir

    return default_data_dir()


def model_spec(args: argparse.Namespace) -> tuple[str, str | None]:
    """(model, pretrained) from the options; the bundled demo model by default."""
    from clip_multimodal.models import DEMO_MODEL

    model = args.model or DEMO_MODEL
    is_path_spec = model.startswith(("local-dir:", "hf-hub:"))
    if not is_path_spec and not args.pretrained:
        # open_clip would build the architecture with random weights: useless for search.
        raise UsageError(
            f"--model {model} needs --pretrained TAG_OR_FILE (e.g. --pretrained "
            "laion2b_s34b_b79k), or use --model local-dir:PATH / hf-hub:ORG/REPO"
        )
    if is_path_spec and args.pretrained:
        raise UsageError(f"--pretrained is for architecture names; {model} names its weights")
    return model, args.pretrained


def open_encoder(args: argparse.Namespace) -> CLIPEncoder:
    from clip_multimodal.encoder import CLIPEncoder

    model, pretrained = model_spec(args)
    return CLIPEncoder(model, pretrained, device=args.device)


def chroma_location(args: argparse.Namespace) -> dict[str, Any]:
    """ImageIndex keyword arguments: a Chroma server, or embedded Chroma under the data dir."""
    if args.chroma_host is not None or args.chroma_port is not None:
        return {"host": args.chroma_host, "port": args.chroma_port}
    return {"path": data_dir(args) / "chroma"}


def open_index(args: argparse.Namespace, encoder: CLIPEncoder) -> ImageIndex:
    from clip_multimodal.index import ImageIndex

    return ImageIndex(encoder, args.collection, **chroma_location(args))


def parse_where(text: str | None) -> dict[str, Any] | None:
    """--where as a dict; a usage error naming the problem otherwise."""
    if text is None:
        return None
    try:
        where = json.loads(text)
    except json.JSONDecodeError as exc:
        raise UsageError(
            f'--where is not valid JSON ({exc.msg}); e.g. --where \'{{"mime": "image/png"}}\''
        ) from exc
    if not isinstance(where, dict):
        raise UsageError('--where must be a JSON object, e.g. \'{"mime": "image/png"}\'')
    return where
