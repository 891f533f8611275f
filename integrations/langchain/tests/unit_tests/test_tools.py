"""The image-search agent tool."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from langchain_clip_multimodal import CLIPImageRetriever, create_image_search_tool
from langchain_core.tools import StructuredTool

from clip_multimodal.access import AccessDeniedError, AccessPolicy


def test_tool_returns_json_able_paths_and_scores(fake_index: Any, colour_pngs: list[Path]) -> None:
    folder = AccessPolicy(roots=[colour_pngs[0].parent])
    tool = create_image_search_tool(fake_index, k=2, image_access=folder)
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


def test_by_default_the_tool_reads_no_file_and_fetches_no_url(
    fake_index: Any, fake_encoder: Any, colour_pngs: list[Path]
) -> None:
    tool = create_image_search_tool(fake_index, k=1)
    assert "path" not in tool.description and "URL" not in tool.description
    for query in (str(colour_pngs[0]), "/etc/passwd", "http://169.254.169.254/latest/meta-data/"):
        fake_encoder.calls.clear()
        assert len(tool.invoke({"query": query})) == 1
        assert fake_encoder.calls == [("embed_texts", 1)]


def test_image_queries_are_opt_in_with_a_root_and_an_allowlist(
    fake_index: Any, colour_pngs: list[Path], tmp_path: Path
) -> None:
    policy = AccessPolicy(roots=[colour_pngs[0].parent], url_hosts=["images.example.com"])
    tool = create_image_search_tool(fake_index, k=1, image_access=policy)
    assert "path or URL" in tool.description
    assert tool.invoke({"query": str(colour_pngs[1])})[0]["uri"] == str(colour_pngs[1])
    outside = tmp_path / "secret.png"
    outside.write_bytes(colour_pngs[0].read_bytes())
    for query in (str(outside), "http://169.254.169.254/latest/meta-data/"):
        with pytest.raises(AccessDeniedError):
            tool.invoke({"query": query})
    # A configured retriever keeps its policy; image_access= replaces it.
    retriever = CLIPImageRetriever(index=fake_index, image_access=policy)
    assert create_image_search_tool(retriever).func is not None
    text_only = create_image_search_tool(retriever, image_access=AccessPolicy())
    with pytest.raises(AccessDeniedError):
        text_only.invoke({"query": str(colour_pngs[1])})
