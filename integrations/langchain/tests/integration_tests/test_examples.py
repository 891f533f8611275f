"""The LangChain examples run end to end on the demo model, with recording fake chat models."""

from __future__ import annotations

import base64
import io
import json
import runpy
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from langchain_core.language_models.fake_chat_models import GenericFakeChatModel
from langchain_core.messages import AIMessage, BaseMessage, HumanMessage, ToolMessage
from PIL import Image
from pydantic import Field

EXAMPLES = Path(__file__).resolve().parents[4] / "examples"


class RecordingChatModel(GenericFakeChatModel):
    """Answers from a script and records every message list it is sent."""

    seen: list[list[BaseMessage]] = Field(default_factory=list)

    def _generate(self, messages: list[BaseMessage], *args: Any, **kwargs: Any) -> Any:
        self.seen.append(list(messages))
        return super()._generate(messages, *args, **kwargs)

    def bind_tools(self, tools: Any, **kwargs: Any) -> Any:
        return self


def _script(*replies: AIMessage) -> Iterator[AIMessage]:
    return iter(replies)


def test_rag_chain_sends_the_retrieved_images_to_the_chat_model(
    tmp_path: Path, demo_images_dir: Path
) -> None:
    example = runpy.run_path(str(EXAMPLES / "langchain_rag_chain.py"))
    model = RecordingChatModel(messages=_script(AIMessage("It is a blue cross.")))
    argv = ["a large blue cross", "--images", str(demo_images_dir), "--data-dir", str(tmp_path)]
    answer = example["main"]([*argv, "-k", "2", "--max-side", "48"], chat_model=model)
    assert answer == "It is a blue cross."
    (messages,) = model.seen
    human = messages[-1]
    assert isinstance(human, HumanMessage)
    blocks = human.content_blocks
    text, images = blocks[0], blocks[1:]
    assert text["type"] == "text" and "a large blue cross" in text["text"]
    assert "1. image: shapes/blue-cross-large-" in text["text"]
    assert [b["type"] for b in images] == ["image", "image"]
    for block in images:
        assert block["mime_type"] == "image/jpeg"  # type: ignore[typeddict-item]
        picture = Image.open(io.BytesIO(base64.b64decode(block["base64"])))  # type: ignore[typeddict-item]
        assert picture.format == "JPEG" and max(picture.size) <= 48


@pytest.mark.slow  # a fresh interpreter: torch, Chroma and the model load again
def test_rag_chain_runs_as_a_script_offline(tmp_path: Path) -> None:
    script = str(EXAMPLES / "langchain_rag_chain.py")
    out = subprocess.run(
        [sys.executable, script, "a handwritten two", "-k", "2", "--data-dir", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=300,
        check=True,
    )
    assert "[human] a handwritten two" in out.stdout
    assert out.stdout.count("<image image/jpeg") == 2
    assert (tmp_path / "images" / "digits").is_dir()


def test_agent_calls_the_image_search_tool(tmp_path: Path, demo_images_dir: Path) -> None:
    example = runpy.run_path(str(EXAMPLES / "langchain_agent.py"))
    call = {
        "name": "image_search",
        "args": {"query": "a silhouette of a zebra", "k": 2},
        "id": "c1",
    }
    model = RecordingChatModel(
        messages=_script(AIMessage("", tool_calls=[call]), AIMessage("Here are the zebras."))
    )
    argv = ["find a zebra", "--images", str(demo_images_dir), "--data-dir", str(tmp_path)]
    answer = example["main"](argv, chat_model=model)
    assert answer == "Here are the zebras."
    assert len(model.seen) == 2
    tool_message = model.seen[1][-1]
    assert isinstance(tool_message, ToolMessage) and tool_message.tool_call_id == "c1"
    results = json.loads(str(tool_message.content))
    assert len(results) == 2
    assert Path(results[0]["uri"]).name.startswith("zebra-")
    assert Path(results[0]["uri"]).is_file()
    assert results[0]["score"] >= results[1]["score"]


@pytest.mark.slow  # a fresh interpreter: torch, Chroma and the model load again
def test_agent_runs_as_a_script_offline(tmp_path: Path) -> None:
    script = str(EXAMPLES / "langchain_agent.py")
    out = subprocess.run(
        [sys.executable, script, "a large yellow star", "--data-dir", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=300,
        check=True,
    )
    assert "[tool]" in out.stdout
    assert "Best match:" in out.stdout and "yellow-star-large-" in out.stdout
