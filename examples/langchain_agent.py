"""An agent that searches images: a tool-calling chat model with the image-search tool.

    python examples/langchain_agent.py "Find me a handwritten two"
    python examples/langchain_agent.py "Any giraffes?" --chat-model openai:gpt-4o-mini

The agent loop is LangChain's plain tool-calling loop: bind the tools, invoke the model,
run each tool call, feed back the ToolMessages, until the model answers. The tool returns
image paths and scores as JSON. Without --chat-model the script runs offline with a
stand-in model that calls the tool once with your request and reports the best match.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from langchain_clip_multimodal import create_image_search_tool
from langchain_core.language_models import BaseChatModel
from langchain_core.messages import (
    AIMessage,
    BaseMessage,
    HumanMessage,
    SystemMessage,
    ToolMessage,
)
from langchain_core.outputs import ChatGeneration, ChatResult
from langchain_core.tools import BaseTool

SYSTEM = (
    "You help people find images in their collection. Use the image_search tool with a short "
    "description of the picture, then answer with the best paths."
)


def run_agent(
    model: BaseChatModel, tools: Sequence[BaseTool], request: str, max_steps: int = 4
) -> list[BaseMessage]:
    """The tool-calling loop; returns the whole conversation, the answer last."""
    bound = model.bind_tools(list(tools))
    by_name = {tool.name: tool for tool in tools}
    messages: list[BaseMessage] = [SystemMessage(SYSTEM), HumanMessage(request)]
    for _ in range(max_steps):
        reply = bound.invoke(messages)
        messages.append(reply)
        if not isinstance(reply, AIMessage) or not reply.tool_calls:
            return messages
        for call in reply.tool_calls:
            messages.append(by_name[call["name"]].invoke(call))
    raise RuntimeError(f"the agent did not answer within {max_steps} steps")


class OfflineToolCaller(BaseChatModel):
    """A stand-in for a real model, so the example runs offline: it searches for the
    request once, then names the best match."""

    @property
    def _llm_type(self) -> str:
        return "offline-tool-caller"

    def bind_tools(self, tools: Sequence[Any], **kwargs: Any) -> Any:
        return self

    def _generate(self, messages: list[BaseMessage], *args: Any, **kwargs: Any) -> ChatResult:
        last = messages[-1]
        if isinstance(last, ToolMessage):
            hits = json.loads(str(last.content))
            best = hits[0] if hits else None
            text = f"Best match: {best['uri']} (score {best['score']:.2f})" if best else "None."
            reply = AIMessage(text)
        else:
            call = {"name": "image_search", "args": {"query": str(last.content)}, "id": "call-1"}
            reply = AIMessage("", tool_calls=[call])
        return ChatResult(generations=[ChatGeneration(message=reply)])


def main(argv: list[str] | None = None, chat_model: BaseChatModel | None = None) -> str:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("request", help="what you are looking for")
    parser.add_argument("--images", type=Path, help="folder of images (default: demo images)")
    parser.add_argument("--data-dir", type=Path, default=Path(".data/langchain-agent"))
    parser.add_argument("--model", default=None, help="CLIP model (default: the demo model)")
    parser.add_argument("--chat-model", help="provider:model, e.g. openai:gpt-4o-mini")
    parser.add_argument("-k", type=int, default=3, help="images per search")
    args = parser.parse_args(argv)

    from clip_multimodal import CLIPEncoder, ImageIndex
    from clip_multimodal.models import DEMO_MODEL

    images = args.images or _demo_images(args.data_dir / "images")
    encoder = CLIPEncoder(args.model or DEMO_MODEL, device="cpu")
    index = ImageIndex(encoder, "agent-images", args.data_dir / "chroma")
    print(f"indexed {images}: {index.index_folder(images, progress=False)}", file=sys.stderr)
    if chat_model is None:
        chat_model = _load_chat_model(args.chat_model) if args.chat_model else OfflineToolCaller()
    tool = create_image_search_tool(index, k=args.k)
    messages = run_agent(chat_model, [tool], args.request)
    for message in messages[2:]:
        print(f"[{message.type}] {message.content or getattr(message, 'tool_calls', '')}")
    return str(messages[-1].content)


def _load_chat_model(spec: str) -> BaseChatModel:
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


if __name__ == "__main__":
    main()
