"""What the LangChain examples share: their command line, the image index, the chat model.

Not an example itself; `langchain_agent.py` and `langchain_rag_chain.py` import it from
beside them.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from langchain_core.language_models import BaseChatModel

    from clip_multimodal import ImageIndex


def example_parser(
    doc: str, query: str, query_help: str, data_dir: str, k_help: str
) -> argparse.ArgumentParser:
    """The options both examples take: the query, --images, --data-dir, --model,
    --chat-model and -k."""
    parser = argparse.ArgumentParser(description=doc.splitlines()[0])
    parser.add_argument(query, help=query_help)
    parser.add_argument("--images", type=Path, help="folder of images (default: demo images)")
    parser.add_argument("--data-dir", type=Path, default=Path(data_dir))
    parser.add_argument("--model", default=None, help="CLIP model (default: the demo model)")
    parser.add_argument("--chat-model", help="provider:model, e.g. openai:gpt-4o-mini")
    parser.add_argument("-k", type=int, default=3, help=k_help)
    return parser


def index_images(args: argparse.Namespace, collection: str) -> ImageIndex:
    """An ImageIndex over --images (default: the demo images, written under --data-dir) with
    --model (default: the demo model); only new or changed files are embedded."""
    from clip_multimodal import CLIPEncoder, ImageIndex
    from clip_multimodal.models import DEMO_MODEL

    images = args.images or _demo_images(args.data_dir / "images")
    encoder = CLIPEncoder(args.model or DEMO_MODEL, device="cpu")
    index = ImageIndex(encoder, collection, args.data_dir / "chroma")
    print(f"indexed {images}: {index.index_folder(images, progress=False)}", file=sys.stderr)
    return index


def load_chat_model(spec: str) -> BaseChatModel:
    """`provider:model` through LangChain's init_chat_model (needs `langchain` + provider)."""
    try:
        from langchain.chat_models import init_chat_model
    except ImportError as exc:
        raise SystemExit(
            "--chat-model needs the 'langchain' package and the provider's package, e.g. "
            "pip install langchain langchain-openai"
        ) from exc
    model: BaseChatModel = init_chat_model(spec)
    return model


def _demo_images(folder: Path) -> Path:
    from clip_multimodal.datasets import write_demo_images

    if not folder.is_dir():
        write_demo_images(folder)
    return folder
