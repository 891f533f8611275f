"""What commands share: the usage error, and opening the model and the index from options.

torch, open_clip and chromadb are imported here only inside functions, when a command runs.
"""

from __future__ import annotations

import argparse
import json
import shlex
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from clip_multimodal.encoder import CLIPEncoder
    from clip_multimodal.index import CollectionInfo, ImageIndex
    from clip_multimodal.models import ModelSpec

__all__ = [
    "UsageError",
    "check_collection_option",
    "data_dir",
    "find_collection",
    "index_command",
    "model_spec",
    "open_encoder",
    "open_index",
    "parse_where",
    "server_address",
]


class UsageError(Exception):
    """The command line asks for something impossible (exit status 2)."""


def data_dir(args: argparse.Namespace) -> Path:
    """--data-dir, else the default data dir (`CLIP_MULTIMODAL_DATA_DIR` or per-user)."""
    if args.data_dir:
        return Path(args.data_dir).expanduser()
    from clip_multimodal.index import default_data_dir

    return default_data_dir()


def model_spec(args: argparse.Namespace) -> ModelSpec:
    """The model options (--model, --pretrained, --device, --precision, --batch-size) as a
    spec; the bundled demo model by default. A usage error names a bad option."""
    from clip_multimodal.errors import InvalidModelSpecError
    from clip_multimodal.models import (
        CN_CLIP,
        DEFAULT_PRETRAINED,
        DEMO_MODEL,
        HF_HUB,
        LOCAL_DIR,
        OPENAI_NAMES,
        ModelSpec,
        names_its_weights,
    )

    model = args.model or DEMO_MODEL
    # An OpenAI name (ViT-B/32) means OpenAI's weights; cn-clip:ARCH without --pretrained
    # means cn_clip's own download of ARCH; other architectures need a tag.
    if (
        not names_its_weights(model)
        and not args.pretrained
        and model not in OPENAI_NAMES
        and not model.startswith(CN_CLIP)
    ):
        # open_clip would build the architecture with random weights: useless for search.
        raise UsageError(
            f"--model {model} needs --pretrained TAG_OR_FILE (e.g. --pretrained "
            f"{DEFAULT_PRETRAINED}), or use --model {LOCAL_DIR}PATH / {HF_HUB}ORG/REPO"
        )
    if names_its_weights(model) and args.pretrained:
        raise UsageError(f"--pretrained is for architecture names; {model} names its weights")
    try:
        return ModelSpec(model, args.pretrained, args.device, args.precision, args.batch_size)
    except InvalidModelSpecError as exc:
        raise UsageError(f"--{exc.field.replace('_', '-')}: {exc}") from exc


def open_encoder(args: argparse.Namespace) -> CLIPEncoder:
    spec = model_spec(args)  # usage errors before torch loads
    from clip_multimodal.encoder import CLIPEncoder

    return CLIPEncoder.from_spec(spec)


def chroma_location(args: argparse.Namespace) -> dict[str, Any]:
    """ImageIndex keyword arguments: a Chroma server, or embedded Chroma under the data dir."""
    if args.chroma_host is not None or args.chroma_port is not None:
        return {"host": args.chroma_host, "port": args.chroma_port}
    return {"path": data_dir(args) / "chroma"}


def check_collection_option(args: argparse.Namespace) -> None:
    """A usage error for a --collection name Chroma would refuse (before anything loads)."""
    from clip_multimodal.errors import InvalidCollectionNameError
    from clip_multimodal.index import check_collection_name

    try:
        check_collection_name(args.collection)
    except InvalidCollectionNameError as exc:
        raise UsageError(f"--collection: {exc}") from exc


def index_command(args: argparse.Namespace) -> str:
    """The `index` command that builds the index the options name, with the user's flags."""
    flags = [
        f"--{name} {shlex.quote(str(value))}"
        for name, value in (
            ("data-dir", args.data_dir),
            ("host", args.chroma_host),
            ("port", args.chroma_port),
            ("collection", args.collection),
            ("model", args.model),
            ("pretrained", args.pretrained),
        )
        if value is not None
    ]
    return " ".join(["clip-multimodal index DIR", *flags])


def _holds_a_store(path: Path) -> bool:
    return path.is_dir() and any(
        entry.name == "chroma.sqlite3" or entry.is_dir() for entry in path.iterdir()
    )


def find_collection(args: argparse.Namespace) -> CollectionInfo:
    """The collection the options name, found without creating or changing anything.

    Raises:
        IndexNotFoundError: no Chroma store at the data dir, or no such collection; the
            message names where it looked and the `index` command that builds it.
    """
    from clip_multimodal.errors import IndexNotFoundError
    from clip_multimodal.index import describe_collection

    where = chroma_location(args)
    build = f"build it with: {index_command(args)}"
    path = where.get("path")
    # Opening an embedded client creates its folder and database: look before opening. A
    # folder with segment folders but no database is damage, which opening reports.
    if path is not None and not _holds_a_store(path):
        raise IndexNotFoundError(
            f"no index in data dir {data_dir(args)}: {path} holds no Chroma store "
            f"(looked for collection {args.collection!r}); {build}"
        )
    found = describe_collection(
        args.collection, path, host=where.get("host"), port=where.get("port")
    )
    if found is None:
        place = f"embedded Chroma at {path}" if path is not None else server_address(where)
        raise IndexNotFoundError(f"no collection {args.collection!r} in {place}; {build}")
    return found


def server_address(where: dict[str, Any]) -> str:
    return f"the Chroma server at {where.get('host') or 'localhost'}:{where.get('port') or 8000}"


def open_index(
    args: argparse.Namespace, encoder: CLIPEncoder, *, read_only: bool = False
) -> ImageIndex:
    """The index the options name; `read_only` opens an existing one and never writes."""
    from clip_multimodal.index import open_index as open_core_index

    return open_core_index(encoder, args.collection, read_only=read_only, **chroma_location(args))


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
