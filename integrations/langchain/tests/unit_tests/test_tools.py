"""The image-search agent tool."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from langchain_clip_multimodal import CLIPImageRetriever, create_image_search_tool
from langchain_core.tools import StructuredTool


def test_tool_returns_json_able_paths_and_scores(fake_index: Any, colour_pngs: list[Path]) -> None:
    tool = create_image_search_tool(fake_index, k=2)
    assert isinstance(tool, StructuredTool)
    assert tool.name == "image_search"
    assert set(tool.args) == {"query", "k"}
    result = tool.invoke({"query": str(colour_pngs[3])})
    assert json.loads(json.dumps(result)) == result
    assert len(result) == 2
    assert result[0]["uri"] == str(colour_pngs[3])
    assert set(result[0]) == {"uri", "score"}
    assert result[0]["score"] >= result[1]["score"]
    assert len(tool.invoke({"query": "anything", "k": 3})) == 3


async def test_tool_runs_async_and_from_a_tool_call(fake_index: Any) -> None:
    tool = create_image_search_tool(fake_index)
    result = await tool.ainvoke({"query": "warm colours"})
    assert len(result) == 4
    message = tool.invoke(
        {
            "type": "tool_call",
            "id": "call-1",
            "name": "image_search",
            "args": {"query": "x", "k": 1},
        }
    )
    assert message.tool_call_id == "call-1"
    assert len(json.loads(message.content)) == 1


def test_a_configured_retriever_keeps_its_filter(fake_index: Any) -> None:
    retriever = CLIPImageRetriever(index=fake_index, where={"warm": True})
    result = create_image_search_tool(retriever).invoke({"query": "anything"})
    assert {Path(r["uri"]).stem for r in result} == {"red", "yellow"}
