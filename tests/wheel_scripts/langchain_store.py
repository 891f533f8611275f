"""LangChain over the installed wheels: CLIPChroma and its retriever over the demo images.

Run by tests/test_wheels.py inside a fresh virtualenv, outside the repository:
    python langchain_store.py WORK_DIR
It prints one JSON line: the top hits per query and where each module was imported from.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import chromadb
import langchain_clip_multimodal
import langchain_core
import torch
from langchain_clip_multimodal import CLIPChroma, CLIPEmbeddings

import clip_multimodal
from clip_multimodal.datasets import write_demo_images

QUERIES = {
    "a handwritten seven": "/digits/seven-",
    "a silhouette of a zebra": "/animals/zebra-",
    "a large yellow star": "/shapes/yellow-star-large-",
}

work = Path(sys.argv[1])
paths = [str(path) for path, _ in write_demo_images(work / "images")]
store = CLIPChroma(
    collection_name="demo",
    embedding_function=CLIPEmbeddings(model_name="clip-multimodal-demo", device="cpu"),
    persist_directory=str(work / "chroma"),
)
store.add_images(paths)
retriever = store.as_retriever(search_kwargs={"k": 3})
hits = {query: [doc.metadata["uri"] for doc in retriever.invoke(query)] for query in QUERIES}
modules = [clip_multimodal, langchain_clip_multimodal, langchain_core, chromadb, torch]
print(
    json.dumps(
        {
            "indexed": len(paths),
            "hits": hits,
            "expected": QUERIES,
            "modules": {m.__name__: m.__file__ for m in modules},
            "sys_path": sys.path,
        }
    )
)
