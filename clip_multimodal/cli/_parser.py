"""The argument parser of `clip-multimodal`. Importing it imports no torch, numpy or chromadb."""

from __future__ import annotations

import argparse
import os
import textwrap
from collections.abc import Callable

from clip_multimodal.models import DEFAULT_PRETRAINED, PRECISIONS

__all__ = ["build_parser", "new_parser"]

DESCRIPTION = """\
Index folders of images into Chroma with CLIP, then search them by text or by image,
classify images zero-shot, and serve it all over HTTP with a search page.

The three-step pipeline:
  clip-multimodal index ~/Pictures            # 1-2. embed the images, build the index
  clip-multimodal search "a dog on a beach"   # search it from the shell
  clip-multimodal serve                       # 3. the web page at http://127.0.0.1:8000
"""

EPILOG = """\
Every command takes --model/--pretrained, --device, --precision, --batch-size, --data-dir,
--collection, --host/--port
(a Chroma server; `serve` calls them --chroma-host/--chroma-port) and --debug.
Run `clip-multimodal COMMAND --help` for a command's options.

Environment:
  CLIP_MULTIMODAL_DATA_DIR   the default --data-dir
  CLIP_MULTIMODAL_MODEL      the default --model (else the bundled demo model)
  CLIP_MULTIMODAL_TOKEN      the default `serve --token`

Exit status: 0 success, 1 a runtime error or a failed item, 2 a usage error.
"""

DATA_DIR_HELP = (
    "where embedded Chroma keeps the index (DIR/chroma); default: $CLIP_MULTIMODAL_DATA_DIR, "
    "else the per-user data folder (~/.local/share/clip-multimodal on Linux)"
)
MODEL_HELP = (
    "the CLIP model: an open_clip architecture (ViT-B-32, with --pretrained), an OpenAI name "
    "(ViT-B/32: OpenAI's weights), hf-hub:ORG/REPO, local-dir:PATH, transformers:ORG/REPO or "
    "transformers:PATH (Hugging Face CLIP, SigLIP, Chinese-CLIP), or cn-clip:ARCH (Chinese-CLIP; "
    "--pretrained FILE or its download); see `clip-multimodal models`; default: "
    "$CLIP_MULTIMODAL_MODEL, else the bundled demo model (a small "
    "CLIP trained offline on shapes, digits and animals: a demo, not a general model)"
)


class _Formatter(argparse.RawDescriptionHelpFormatter):
    """Keeps the description's line breaks and shows each option's meaningful default."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        help_ = action.help
        if help_ and "%(default)" not in help_ and "default:" not in help_:
            default = action.default
            shown = default not in (None, [], argparse.SUPPRESS) and not isinstance(default, bool)
            if action.option_strings and shown:
                help_ += " (default: %(default)s)"
        return help_


def _common(parser: argparse.ArgumentParser, *, serve: bool = False) -> None:
    group = parser.add_argument_group("common options")
    group.add_argument("--model", default=os.environ.get("CLIP_MULTIMODAL_MODEL"), help=MODEL_HELP)
    group.add_argument(
        "--pretrained",
        help=f"with an architecture name: a pretrained tag ({DEFAULT_PRETRAINED}) or a weights file",
    )
    group.add_argument("--device", default="auto", help="auto (cuda, mps, cpu), cpu, cuda, cuda:1")
    group.add_argument(
        "--precision",
        default="auto",
        choices=PRECISIONS,
        help="the model's precision; auto: bf16 or fp16 on a GPU, bf16 on a CPU that runs it "
        "natively and faster (AVX512-BF16, AMX), else fp32",
    )
    group.add_argument(
        "--batch-size",
        type=int,
        metavar="N",
        help="items per forward pass (default: 32 on the CPU, 256 on a GPU)",
    )
    group.add_argument("--data-dir", help=DATA_DIR_HELP)
    group.add_argument("--collection", default="images", help="the Chroma collection name")
    # `serve` binds --host/--port itself, so there the Chroma server has the long names only.
    names = ["--chroma-host"] if serve else ["--host", "--chroma-host"]
    group.add_argument(
        *names, dest="chroma_host", help="a Chroma server's host (default: embedded)"
    )
    names = ["--chroma-port"] if serve else ["--port", "--chroma-port"]
    group.add_argument(*names, dest="chroma_port", type=int, help="the Chroma server's port")
    group.add_argument("--debug", action="store_true", help="print tracebacks on errors")


def _json(parser: argparse.ArgumentParser, help_: str = "print JSON") -> None:
    parser.add_argument("--json", action="store_true", help=help_)


def _index(p: argparse.ArgumentParser) -> None:
    p.add_argument("folders", nargs="+", metavar="DIR", help="folders of images")
    p.add_argument("--no-recursive", dest="recursive", action="store_false", help="skip subfolders")
    p.add_argument(
        "--pattern",
        action="append",
        dest="patterns",
        metavar="GLOB",
        help="file name pattern, repeatable (default: common image types)",
    )
    p.add_argument("--no-progress", dest="progress", action="store_false", help="no progress bar")
    p.add_argument(
        "--verify",
        action="store_true",
        help="read and hash every file, not only those whose size or mtime changed",
    )
    p.add_argument(
        "--documents",
        choices=("images", "pages", "both"),
        default="images",
        help="PDF/PPTX files: index their embedded images, their rendered pages, or both",
    )
    p.add_argument(
        "--min-image-size",
        type=int,
        default=32,
        metavar="PX",
        help="skip images inside documents narrower or lower than this (icons, rules)",
    )
    p.add_argument(
        "--rebuild",
        action="store_true",
        help="drop the collection (even a damaged one) and index the folders from scratch",
    )
    from clip_multimodal.cli._ray import add_ray_options

    add_ray_options(p)


def _search(p: argparse.ArgumentParser) -> None:
    p.add_argument("text", nargs="?", help="the text query")
    p.add_argument("--image", metavar="PATH_OR_URL", help="search by this image instead")
    p.add_argument("-k", type=int, default=5, help="how many hits")
    p.add_argument(
        "--where", metavar="JSON", help='a Chroma metadata filter, e.g. \'{"mime": "image/png"}\''
    )
    _json(p, "print JSON (id, uri, score, metadata)")


def _classify(p: argparse.ArgumentParser) -> None:
    p.add_argument("images", nargs="+", metavar="IMAGE", help="image paths or URLs")
    p.add_argument(
        "--labels",
        required=True,
        action="append",
        metavar="A,B,C",
        help="comma-separated labels (repeatable)",
    )
    p.add_argument(
        "--template",
        "--templates",
        dest="templates",
        action="append",
        metavar="TEMPLATE",
        help='a prompt template with {} for the label, repeatable, e.g. "a photo of a {}." '
        "(default: the OpenAI ImageNet ensemble of 80 templates)",
    )
    p.add_argument("--top", type=int, default=3, help="labels shown per image")
    _json(p)


def _serve(p: argparse.ArgumentParser) -> None:
    p.add_argument("--host", default="127.0.0.1", help="the address to bind")
    p.add_argument("--port", type=int, default=8000, help="the port to bind")
    p.add_argument(
        "--token",
        default=os.environ.get("CLIP_MULTIMODAL_TOKEN"),
        help="require 'Authorization: Bearer TOKEN' on /v1 (mandatory off loopback; "
        "default: $CLIP_MULTIMODAL_TOKEN)",
    )
    p.add_argument("--enable-index", action="store_true", help="allow POST /v1/index uploads")
    p.add_argument(
        "--allow-url-host",
        action="append",
        default=[],
        metavar="HOST",
        help="let requests name image URLs on HOST (repeatable); URL fetching is off otherwise",
    )
    p.add_argument(
        "--allow-host",
        action="append",
        default=[],
        metavar="NAME",
        help="accept requests for Host NAME besides localhost and the bound address "
        "(repeatable; '*' for any, e.g. behind a proxy)",
    )
    p.add_argument(
        "--allow-origin",
        action="append",
        default=[],
        metavar="ORIGIN",
        help="let pages from ORIGIN (https://app.example.com) call the API, with CORS "
        "(repeatable); other sites get 403",
    )
    p.add_argument("--max-image-mb", type=float, default=10.0, help="cap on one image")
    p.add_argument(
        "--max-decode-mb",
        type=float,
        default=512.0,
        help="memory one image may need to decode (judged from its header)",
    )
    p.add_argument("--timeout", type=float, default=30.0, help="seconds before a request gets 504")
    p.add_argument("--max-batch", type=int, default=32, help="items per shared forward pass")
    p.add_argument(
        "--batch-wait-ms", type=float, default=5.0, help="how long a batch waits to fill"
    )
    p.add_argument("--log-level", default="info", help="uvicorn's log level")


def _info(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--check",
        action="store_true",
        help="check the store's files and that a query reaches every record (exit 1 if not)",
    )
    _json(p)


def _no_options(p: argparse.ArgumentParser) -> None:
    """`demo` takes only the common options."""


#: name -> (the one-line help in the command list, the description, its own options).
_COMMANDS: dict[str, tuple[str, str, Callable[[argparse.ArgumentParser], None]]] = {
    "index": (
        "index folders of images (incremental)",
        "Bring the collection in sync with folders of images: new and changed files are "
        "embedded, unchanged ones skipped, deleted ones removed. Prints the report; exits 1 "
        "if any image failed.",
        _index,
    ),
    "search": (
        "search the index by text or by image",
        'Print the top-k images for a text ("a red circle") or an image (--image).',
        _search,
    ),
    "classify": (
        "zero-shot classification of images",
        "Score each image against the labels with prompt ensembles (each label is put into "
        "every template and the embeddings averaged).",
        _classify,
    ),
    "serve": (
        "run the HTTP service and the search page",
        "Serve /v1/embed/text, /v1/embed/image, /v1/search, /v1/rank, /v1/classify, "
        "/v1/images/{id}, /healthz and the search page at /. Needs the server extra: "
        'pip install "clip-multimodal[server]".',
        _serve,
    ),
    "demo": (
        "index the demo images and search them (offline)",
        "Write the bundled held-out demo images under DATA_DIR/demo-images, index them into "
        "the collection 'demo' at DATA_DIR/chroma, and run a few searches. What `make demo` runs.",
        _no_options,
    ),
    "models": (
        "list the model families and the weights in the local caches",
        "List the families of model names this package loads, and the weights already in "
        "the local caches (Hugging Face, open_clip's and cn_clip's ~/.cache/clip, the demo "
        "model), each with its model id, dimension (from its config: nothing is loaded) and "
        "whether it loads offline.",
        _json,
    ),
    "info": (
        "show the model, the device and the collection",
        "Show the model, its device and id, the collection's size and the model id recorded "
        "in the collection (a collection only accepts the model that built it). --check "
        "checks the store instead: its files, and that a query reaches every record.",
        _info,
    ),
}


def _add_command(
    subparsers: argparse._SubParsersAction[argparse.ArgumentParser], name: str
) -> None:
    help_, description, add_options = _COMMANDS[name]
    p = subparsers.add_parser(
        name, help=help_, description=textwrap.fill(description, 79), formatter_class=_Formatter
    )
    add_options(p)
    _common(p, serve=name == "serve")


def _add_train(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = subparsers.add_parser(
        "train",
        help="train or fine-tune a CLIP model (see `clip-multimodal train --help`)",
        add_help=False,  # the training command has its own parser and --help
    )
    p.add_argument("train_args", nargs=argparse.REMAINDER)


def new_parser(prog: str, description: str, epilog: str) -> argparse.ArgumentParser:
    """A top-level parser that keeps the line breaks of `description` and `epilog`."""
    return argparse.ArgumentParser(
        prog=prog,
        description=description,
        epilog=epilog,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )


def build_parser() -> argparse.ArgumentParser:
    """The `clip-multimodal` parser, with one subcommand per job."""
    parser = new_parser("clip-multimodal", DESCRIPTION, EPILOG)
    parser.add_argument("--version", action="version", version=f"%(prog)s {_version()}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name in ("index", "search", "classify", "serve", "train", "demo", "info", "models"):
        if name == "train":
            _add_train(subparsers)
        else:
            _add_command(subparsers, name)
    return parser


def _version() -> str:
    from clip_multimodal import __version__

    return __version__
