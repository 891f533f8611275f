"""An agent that searches images: a tool-calling chat model with the image-search tool.

    python examples/langchain_agent.py "Find me a handwritten two"
    python examples/langchain_agent.py "Any giraffes?" --chat-model openai:gpt-4o-mini

The agent loop is LangChain's plain tool-calling loop: bind the tools, invoke the model,
run each tool call, feed back the ToolMessages, until the model answers. The tool returns
image paths and scores as JSON. Without --chat-model the script runs offline with a
stand-in model that calls the tool once with your request and reports the best match.
"""

from __future__ import annotations

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

_HERE = str(Path(__file__).resolve().parent)
if _HERE not in sys.path:  # run by runpy or imported, not as a script: find _common beside it
    sys.path.insert(0, _HERE)

from _common import example_parser, index_images, load_chat_model  # noqa: E402

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
    parser = example_parser(
        __doc__, "request", "what you are looking for", ".data/langchain-agent", "images per search"
    )
    args = parser.parse_args(argv)
    index = index_images(args, "agent-images")
    if chat_model is None:
        chat_model = load_chat_model(args.chat_model) if args.chat_model else OfflineToolCaller()
    tool = create_image_search_tool(index, k=args.k)
    messages = run_agent(chat_model, [tool], args.request)
    for message in messages[2:]:
        print(f"[{message.type}] {message.content or getattr(message, 'tool_calls', '')}")
    return str(messages[-1].content)


if __name__ == "__main__":
    main()
