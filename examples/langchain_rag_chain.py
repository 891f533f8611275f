"""Multimodal RAG with LangChain: find images by text, then show them to a vision chat model.

    python examples/langchain_rag_chain.py "a handwritten seven"
    python examples/langchain_rag_chain.py "a red star" --images ~/Pictures --model ViT-B-32
    python examples/langchain_rag_chain.py "a cat" --chat-model openai:gpt-4o-mini

The images are indexed (incrementally) with clip-multimodal, retrieved by CLIPImageRetriever,
and sent as standard LangChain image content blocks (base64 JPEG, resized) in one
HumanMessage. The chat model is pluggable: any LangChain chat model that takes images.
Without --chat-model the script runs offline and prints what it would send. By default it
uses the bundled demo model and writes the demo images to the data folder.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from langchain_clip_multimodal import CLIPImageRetriever, image_message
from langchain_core.documents import Document
from langchain_core.messages import BaseMessage, SystemMessage
from langchain_core.output_parsers import StrOutputParser
from langchain_core.runnables import Runnable, RunnableLambda, RunnablePassthrough

_HERE = str(Path(__file__).resolve().parent)
if _HERE not in sys.path:  # run by runpy or imported, not as a script: find _common beside it
    sys.path.insert(0, _HERE)

from _common import example_parser, index_images, load_chat_model  # noqa: E402

SYSTEM = "You answer questions about the images you are shown. Refer to them by number."


def to_messages(inputs: dict[str, Any], max_side: int = 256) -> list[BaseMessage]:
    """The question, a numbered list of what was retrieved, and the images themselves."""
    docs: list[Document] = inputs["docs"]
    listing = "\n".join(
        f"{i}. {d.page_content} (score {d.metadata['score']:.2f})" for i, d in enumerate(docs, 1)
    )
    text = f"{inputs['question']}\n\nRetrieved images, in order:\n{listing}"
    return [SystemMessage(SYSTEM), image_message(text, docs, max_side=max_side)]


def build_chain(
    retriever: CLIPImageRetriever, chat_model: Runnable[Any, Any], max_side: int = 256
) -> Runnable[str, str]:
    """question -> retrieve images -> one multimodal message -> chat model -> answer text."""
    prompt: Runnable[dict[str, Any], list[BaseMessage]] = RunnableLambda(
        lambda inputs: to_messages(inputs, max_side)
    )
    return (
        {"question": RunnablePassthrough(), "docs": retriever}
        | prompt
        | chat_model
        | StrOutputParser()
    )


def describe_messages(messages: list[BaseMessage]) -> str:
    """The offline stand-in for a chat model: what it would have been sent."""
    lines = []
    for message in messages:
        for block in message.content_blocks:
            if block["type"] == "text":
                lines.append(f"[{message.type}] {block['text']}")
            elif block["type"] == "image":
                size = len(block.get("base64", "")) * 3 // 4
                lines.append(f"[{message.type}] <image {block.get('mime_type')}, {size} bytes>")
    return "\n".join(lines)


def main(argv: list[str] | None = None, chat_model: Runnable[Any, Any] | None = None) -> str:
    parser = example_parser(
        __doc__,
        "question",
        "what to look for and ask about",
        ".data/langchain-rag",
        "how many images to retrieve",
    )
    parser.add_argument("--max-side", type=int, default=256, help="resize images to fit")
    args = parser.parse_args(argv)
    index = index_images(args, "rag-images")
    retriever = CLIPImageRetriever(index=index, k=args.k)
    if chat_model is None:
        chat_model = (
            load_chat_model(args.chat_model)
            if args.chat_model
            else RunnableLambda(describe_messages)
        )
    answer = build_chain(retriever, chat_model, args.max_side).invoke(args.question)
    print(answer)
    return answer


if __name__ == "__main__":
    main()
