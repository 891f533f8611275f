"""LlamaIndex over the installed wheels: MultiModalVectorStoreIndex on ChromaVectorStore.

Run by tests/test_wheels.py inside a fresh virtualenv, outside the repository:
    python llamaindex_store.py WORK_DIR
It prints one JSON line: the top hits per query and where each module was imported from.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import chromadb
import llama_index.core
import llama_index.embeddings.clip_multimodal as embeddings_module
import llama_index.readers.clip_multimodal as readers_module
import llama_index.retrievers.clip_multimodal as retrievers_module
from llama_index.core import SimpleDirectoryReader, StorageContext
from llama_index.core.indices import MultiModalVectorStoreIndex
from llama_index.embeddings.clip_multimodal import CLIPMultiModalEmbedding
from llama_index.readers.clip_multimodal import image_file_extractor
from llama_index.vector_stores.chroma import ChromaVectorStore

from clip_multimodal.datasets import write_demo_images

QUERIES = {
    "a handwritten seven": "/digits/seven-",
    "a silhouette of a cat": "/animals/cat-",
}
COSINE = {"hnsw": {"space": "cosine"}}

work = Path(sys.argv[1])
write_demo_images(work / "images")
documents = SimpleDirectoryReader(
    str(work / "images"), recursive=True, file_extractor=image_file_extractor()
).load_data()
embed = CLIPMultiModalEmbedding(model_name="clip-multimodal-demo", device="cpu")
client = chromadb.PersistentClient(path=str(work / "chroma"))
text_store = ChromaVectorStore(
    chroma_collection=client.get_or_create_collection("mm_text", configuration=COSINE)
)
image_store = ChromaVectorStore(
    chroma_collection=client.get_or_create_collection("mm_images", configuration=COSINE)
)
storage = StorageContext.from_defaults(vector_store=text_store, image_store=image_store)
index = MultiModalVectorStoreIndex.from_documents(
    documents, storage_context=storage, embed_model=embed, image_embed_model=embed
)
retriever = index.as_retriever(image_similarity_top_k=3)
hits = {
    query: [str(hit.node.image_path) for hit in retriever.text_to_image_retrieve(query)]  # type: ignore[attr-defined]
    for query in QUERIES
}
# Where each of the three LlamaIndex distributions is imported from: the venv, as the rest.
modules = [llama_index.core, embeddings_module, readers_module, retrievers_module, chromadb]
print(
    json.dumps(
        {
            "indexed": len(documents),
            "hits": hits,
            "expected": QUERIES,
            "modules": {m.__name__: m.__file__ for m in modules},
            "sys_path": sys.path,
        }
    )
)
