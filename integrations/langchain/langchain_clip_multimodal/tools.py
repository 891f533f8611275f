"""An agent tool: search images by text (or, where allowed, by an image) for paths and scores."""

from __future__ import annotations

from typing import Any

from langchain_core.tools import StructuredTool
from pydantic import BaseModel, Field

from clip_multimodal.access import AccessPolicy
from clip_multimodal.index import ImageIndex
from langchain_clip_multimodal.retrievers import CLIPImageRetriever

__all__ = ["ImageSearchInput", "create_image_search_tool"]

_DESCRIPTION = (
    "Search the image collection. Give a short description of what the image shows "
    "(e.g. 'a red circle'). Returns a JSON list of {uri, score}, best first; score is the "
    "cosine similarity (higher is better)."
)
_IMAGE_QUERIES = " The query may also be the path or URL of an image, to find similar ones."


class ImageSearchInput(BaseModel):
    """The tool's arguments."""

    query: str = Field(
        description="What the images should show (an image path or URL where the tool allows it)."
    )
    k: int | None = Field(default=None, ge=1, description="How many images to return.")


def create_image_search_tool(
    index: ImageIndex | CLIPImageRetriever,
    k: int | None = None,
    *,
    name: str = "image_search",
    description: str | None = None,
    image_access: AccessPolicy | None = None,
) -> StructuredTool:
    """A `StructuredTool` that an agent calls to search images.

    A prompt injection controls what an agent passes, so by default every query is a text:
    the tool never reads a file or fetches a URL. `image_access` opts in to image queries,
    only where the `AccessPolicy` allows.

    Args:
        index: the image index, or a configured `CLIPImageRetriever` (its `where` and
            `score_threshold` apply).
        k: how many images a call returns unless the agent asks for another number
            (default: the retriever's `k`, or 4).
        name: the tool name the model sees.
        description: the tool description the model sees (default: says whether image
            paths and URLs are accepted).
        image_access: where image queries may read (files under its roots, URLs on its
            hosts); None keeps the retriever's (a new retriever's: text only).

    Returns:
        A tool whose result is a JSON-able list of `{"uri": str | None, "score": float}`.

    Example:
        >>> tool = create_image_search_tool(index, k=3)
        >>> tool.invoke({"query": "a red circle"})
        [{'uri': '/data/shapes/red-circle-small-000.png', 'score': 0.31}, ...]
    """
    if isinstance(index, CLIPImageRetriever):
        update: dict[str, Any] = {} if k is None else {"k": k}
        if image_access is not None:
            update["image_access"] = image_access
        retriever = index.model_copy(update=update) if update else index
    else:
        retriever = CLIPImageRetriever(index=index, k=k or 4, image_access=image_access)
    if description is None:
        images = retriever.image_access is not None
        description = _DESCRIPTION + (_IMAGE_QUERIES if images else "")

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
