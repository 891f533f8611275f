"""An agent tool: search images by text (or by an image path) and get paths and scores."""

from __future__ import annotations

from typing import Any

from langchain_core.tools import StructuredTool
from pydantic import BaseModel, Field

from clip_multimodal.index import ImageIndex
from langchain_clip_multimodal.retrievers import CLIPImageRetriever

__all__ = ["ImageSearchInput", "create_image_search_tool"]

_DESCRIPTION = (
    "Search the image collection. Give a short description of what the image shows "
    "(e.g. 'a red circle'), or the path of an image to find similar ones. Returns a JSON "
    "list of {uri, score}, best first; score is the cosine similarity (higher is better)."
)


class ImageSearchInput(BaseModel):
    """The tool's arguments."""

    query: str = Field(description="What the images should show, or an image path or URL.")
    k: int | None = Field(default=None, ge=1, description="How many images to return.")


def create_image_search_tool(
    index: ImageIndex | CLIPImageRetriever,
    k: int | None = None,
    *,
    name: str = "image_search",
    description: str = _DESCRIPTION,
) -> StructuredTool:
    """A `StructuredTool` that an agent calls to search images.

    Args:
        index: the image index, or a configured `CLIPImageRetriever` (its `where` and
            `score_threshold` apply).
        k: how many images a call returns unless the agent asks for another number
            (default: the retriever's `k`, or 4).
        name: the tool name the model sees.
        description: the tool description the model sees.

    Returns:
        A tool whose result is a JSON-able list of `{"uri": str | None, "score": float}`.

    Example:
        >>> tool = create_image_search_tool(index, k=3)
        >>> tool.invoke({"query": "a red circle"})
        [{'uri': '/data/shapes/red-circle-small-000.png', 'score': 0.31}, ...]
    """
    if isinstance(index, CLIPImageRetriever):
        retriever = index if k is None else index.model_copy(update={"k": k})
    else:
        retriever = CLIPImageRetriever(index=index, k=k or 4)

    def search(query: str, k: int | None = None) -> list[dict[str, Any]]:
        return _results(retriever.invoke(query, k=k))

    async def asearch(query: str, k: int | None = None) -> list[dict[str, Any]]:
        return _results(await retriever.ainvoke(query, k=k))

    return StructuredTool.from_function(
        func=search,
        coroutine=asearch,
        name=name,
        description=description,
        args_schema=ImageSearchInput,
    )


def _results(docs: list[Any]) -> list[dict[str, Any]]:
    return [{"uri": d.metadata.get("uri"), "score": d.metadata["score"]} for d in docs]
