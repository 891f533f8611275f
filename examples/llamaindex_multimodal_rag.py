"""Multimodal RAG with LlamaIndex over a folder of images (and any .txt notes beside them).

    python examples/llamaindex_multimodal_rag.py FOLDER --data-dir ./rag-data \\
        --question "a handwritten seven" [--image query.png] [--llm module:factory]

The first run reads FOLDER with FolderReader (a folder under a hidden one, such as
.data/demo-images from `make demo`, works too), embeds texts and images with
CLIPMultiModalEmbedding (the bundled demo model unless --model says otherwise), and stores
both in Chroma under --data-dir. Later runs reload the index from Chroma without embedding
anything again (the recipe in integrations/llama-index/README.md). It then retrieves the
images that match the question and hands them to a multimodal LLM.

The LLM is pluggable: `--llm package.module:factory` calls `factory()` for any LlamaIndex LLM
that accepts image blocks (for example `llama_index.llms.openai:OpenAI`). The default,
EchoMultiModalLLM, needs no model or network: it answers by listing the images it was given.
"""

from __future__ import annotations

import argparse
import hashlib
import importlib
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from llama_index.core import StorageContext
from llama_index.core.base.llms.types import (
    ChatMessage,
    ChatResponse,
    CompletionResponse,
    CompletionResponseGen,
    ImageBlock,
    LLMMetadata,
)
from llama_index.core.bridge.pydantic import Field
from llama_index.core.indices import MultiModalVectorStoreIndex
from llama_index.core.llms import LLM, CustomLLM
from llama_index.core.node_parser import SentenceSplitter
from llama_index.core.query_engine import RetrieverQueryEngine
from llama_index.embeddings.clip_multimodal import CLIPMultiModalEmbedding
from llama_index.readers.clip_multimodal import FolderReader, content_node_id
from llama_index.vector_stores.chroma import ChromaVectorStore

TEXT_COLLECTION = "rag_text"
IMAGE_COLLECTION = "rag_images"


class EchoMultiModalLLM(CustomLLM):
    """A stand-in multimodal LLM: it answers by listing the images it was shown.

    `received` keeps, per call, a description of each image block (its path, URL or size),
    so tests can check what a query engine passed on.
    """

    received: list[list[ImageBlock]] = Field(default_factory=list, description="images per call")

    @classmethod
    def class_name(cls) -> str:
        return "echo_multi_modal_llm"

    @property
    def metadata(self) -> LLMMetadata:
        # A large window, like today's multimodal models: every retrieved image fits one call.
        return LLMMetadata(
            model_name="echo-multi-modal", is_chat_model=True, context_window=128_000
        )

    def chat(self, messages: Sequence[ChatMessage], **kwargs: Any) -> ChatResponse:
        images = [b for m in messages for b in m.blocks if isinstance(b, ImageBlock)]
        self.received.append(images)
        listing = "".join(f"\n- {describe_image(image)}" for image in images)
        answer = f"I was shown {len(images)} image(s):{listing}"
        return ChatResponse(message=ChatMessage(role="assistant", content=answer))

    async def achat(self, messages: Sequence[ChatMessage], **kwargs: Any) -> ChatResponse:
        return self.chat(messages, **kwargs)

    def complete(self, prompt: str, formatted: bool = False, **kwargs: Any) -> CompletionResponse:
        self.received.append([])  # a text-only prompt
        return CompletionResponse(text="I was shown 0 image(s).")

    def stream_complete(
        self, prompt: str, formatted: bool = False, **kwargs: Any
    ) -> CompletionResponseGen:
        yield self.complete(prompt, formatted, **kwargs)


def describe_image(block: ImageBlock) -> str:
    """A short description of an image block: its path, its http URL, or its bytes' digest."""
    if block.path is not None:
        return str(block.path)
    if block.url is not None and str(block.url).startswith(("http://", "https://")):
        return str(block.url)
    data = block.resolve_image().read()  # inline bytes or a data: URL
    digest = hashlib.sha256(data).hexdigest()[:16]
    return f"{block.image_mimetype or 'image'}, {len(data)} bytes, sha256 {digest}"


def open_index(
    folder: Path, data_dir: Path, embed: CLIPMultiModalEmbedding
) -> tuple[MultiModalVectorStoreIndex, bool]:
    """Reload the index from Chroma if it holds one, else build it from the folder.

    Returns the index and whether it was reloaded.
    """
    import chromadb
    from chromadb.api.collection_configuration import CreateCollectionConfiguration

    client = chromadb.PersistentClient(path=str(data_dir))
    # CLIP vectors are unit length: rank by angle.
    cosine = CreateCollectionConfiguration(hnsw={"space": "cosine"})
    text_store = ChromaVectorStore(
        chroma_collection=client.get_or_create_collection(TEXT_COLLECTION, configuration=cosine)
    )
    image_collection = client.get_or_create_collection(IMAGE_COLLECTION, configuration=cosine)
    image_store = ChromaVectorStore(chroma_collection=image_collection)
    if image_collection.count() > 0:
        index = MultiModalVectorStoreIndex.from_vector_store(
            vector_store=text_store,
            image_vector_store=image_store,
            embed_model=embed,
            image_embed_model=embed,
        )
        return index, True
    # FolderReader reads a folder under a hidden one (.data/ from `make demo`), which
    # SimpleDirectoryReader skips; its content-hash ids make a second build add nothing twice.
    documents = FolderReader().load_data(folder)
    storage = StorageContext.from_defaults(vector_store=text_store, image_store=image_store)
    index = MultiModalVectorStoreIndex.from_documents(
        documents,
        storage_context=storage,
        embed_model=embed,
        image_embed_model=embed,
        transformations=[SentenceSplitter(id_func=content_node_id)],
    )
    return index, False


def load_llm(spec: str | None) -> LLM:
    """`module:factory` -> factory(); None -> EchoMultiModalLLM()."""
    if not spec:
        return EchoMultiModalLLM()
    module, _, name = spec.partition(":")
    if not name:
        raise SystemExit(
            f"--llm takes module:factory, e.g. llama_index.llms.openai:OpenAI, not {spec!r}"
        )
    llm: LLM = getattr(importlib.import_module(module), name)()
    return llm


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folder", type=Path, help="a folder of images (and .txt notes)")
    parser.add_argument("--data-dir", type=Path, required=True, help="where Chroma keeps the index")
    parser.add_argument("--question", default="a handwritten seven")
    parser.add_argument("--image", type=Path, help="also find images like this one")
    parser.add_argument("--top-k", type=int, default=3)
    parser.add_argument("--model", help="open_clip model spec (default: the bundled demo model)")
    parser.add_argument("--pretrained", help="pretrained tag or weights file for --model")
    parser.add_argument("--llm", help="module:factory of a multimodal LLM (default: echo)")
    args = parser.parse_args(argv)

    from clip_multimodal.models import DEMO_MODEL

    llm = load_llm(args.llm)  # a bad spec fails before any embedding work
    embed = CLIPMultiModalEmbedding(
        model_name=args.model or DEMO_MODEL, pretrained=args.pretrained, device="auto"
    )
    index, reloaded = open_index(args.folder, args.data_dir, embed)
    print(("Reloaded" if reloaded else "Built") + f" the index in {args.data_dir}")

    retriever = index.as_retriever(similarity_top_k=1, image_similarity_top_k=args.top_k)
    engine = RetrieverQueryEngine.from_args(retriever=retriever, llm=llm, multimodal=True)
    response = engine.query(args.question)
    print(f"\nQ: {args.question}")
    for hit in response.source_nodes:
        where = getattr(hit.node, "image_path", None) or hit.node.metadata.get("file_path")
        print(f"  [{hit.score:.3f}] {type(hit.node).__name__} {where}")
    print(f"A: {response}")

    if args.image:
        print(f"\nImages like {args.image}:")
        for hit in retriever.image_to_image_retrieve(str(args.image)):
            print(f"  [{hit.score:.3f}] {getattr(hit.node, 'image_path', None)}")


if __name__ == "__main__":
    main()
