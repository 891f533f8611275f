"""CLIPImageRetriever plumbing on the fake encoder (retrieval quality: integration tests)."""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path
from typing import Any

import pytest
from langchain_clip_multimodal import CLIPImageRetriever
from langchain_core.documents import Document
from pydantic import ValidationError

from clip_multimodal.access import AccessDeniedError, AccessPolicy
from clip_multimodal.errors import ImageLoadError


def _images(colour_pngs: list[Path]) -> AccessPolicy:
    """Image queries allowed from the folder of the test images only."""
    return AccessPolicy(roots=[colour_pngs[0].parent])


def test_an_image_path_is_an_image_query(fake_index: Any, colour_pngs: list[Path]) -> None:
    retriever = CLIPImageRetriever(index=fake_index, k=2, image_access=_images(colour_pngs))
    docs = retriever.invoke(str(colour_pngs[2]))
    assert len(docs) == 2
    best = docs[0]
    assert best.metadata["uri"] == str(colour_pngs[2])
    assert best.metadata["score"] == pytest.approx(1.0, abs=1e-4)
    assert best.metadata["mime"] == "image/png" and best.metadata["width"] == 800
    assert best.page_content == "image: colours/blue.png (image/png, 800x300)"
    assert "base64" not in best.page_content and len(best.page_content) < 100
    assert docs[0].metadata["score"] >= docs[1].metadata["score"]


def test_other_strings_are_text_queries(
    fake_index: Any, fake_encoder: Any, colour_pngs: list[Path]
) -> None:
    fake_encoder.calls.clear()
    CLIPImageRetriever(index=fake_index, image_access=_images(colour_pngs)).invoke(
        "a black/white cat"
    )
    assert fake_encoder.calls == [("embed_texts", 1)]


def test_a_path_like_string_must_load(fake_index: Any, colour_pngs: list[Path]) -> None:
    # The core's query rule: with image queries allowed, a str that looks like a path never
    # silently becomes text; it must load (here it is also outside the policy's root).
    with pytest.raises(ImageLoadError):
        CLIPImageRetriever(index=fake_index, image_access=_images(colour_pngs)).invoke(
            "not/a/file.png"
        )


@pytest.mark.parametrize(
    "query",
    ["colours/red.png", "/etc/passwd", "http://169.254.169.254/latest/meta-data/", "FILE"],
)
def test_by_default_every_query_is_a_text_and_reaches_nothing(
    fake_index: Any, fake_encoder: Any, colour_pngs: list[Path], query: str
) -> None:
    query = str(colour_pngs[0]) if query == "FILE" else query
    fake_encoder.calls.clear()
    docs = CLIPImageRetriever(index=fake_index, k=1).invoke(query)
    assert len(docs) == 1
    assert fake_encoder.calls == [("embed_texts", 1)]  # embedded as words, nothing read


def test_image_queries_reach_only_what_the_policy_allows(
    fake_index: Any, colour_pngs: list[Path], tmp_path: Path
) -> None:
    outside = tmp_path / "outside.png"
    outside.write_bytes(colour_pngs[0].read_bytes())
    retriever = CLIPImageRetriever(index=fake_index, k=1, image_access=_images(colour_pngs))
    for query in (str(outside), "/etc/hostname", "http://169.254.169.254/latest/meta-data/"):
        with pytest.raises(AccessDeniedError):
            retriever.invoke(query)
    by_url = CLIPImageRetriever(index=fake_index, image_access=AccessPolicy(url_hosts=["x.test"]))
    with pytest.raises(AccessDeniedError, match="allowlist"):
        by_url.invoke("http://169.254.169.254/latest/meta-data/")


def test_k_where_and_threshold_per_call_override_construction(
    fake_index: Any, colour_pngs: list[Path]
) -> None:
    retriever = CLIPImageRetriever(
        index=fake_index, k=4, where={"warm": True}, image_access=_images(colour_pngs)
    )
    assert len(retriever.invoke("anything")) == 2
    assert len(retriever.invoke("anything", k=1)) == 1
    cold = retriever.invoke("anything", where={"warm": False})
    assert {Path(d.metadata["uri"]).stem for d in cold} == {"green", "blue"}
    exact = retriever.invoke(str(colour_pngs[0]), where={}, score_threshold=0.999)
    assert [Path(d.metadata["uri"]).stem for d in exact] == ["red"]
    strict = retriever.model_copy(update={"score_threshold": 0.999, "where": None})
    assert len(strict.invoke(str(colour_pngs[1]))) == 1
    assert len(strict.invoke(str(colour_pngs[1]), score_threshold=-1.0)) == 4


async def test_ainvoke_runs_off_the_event_loop(fake_index: Any, colour_pngs: list[Path]) -> None:
    threads: list[int] = []
    original = fake_index.encoder.embed_images

    def recording(images: Any) -> Any:
        threads.append(threading.get_ident())
        return original(images)

    fake_index.encoder.embed_images = recording
    retriever = CLIPImageRetriever(index=fake_index, k=3, image_access=_images(colour_pngs))
    docs = await retriever.ainvoke(str(colour_pngs[0]), k=1)
    assert [d.metadata["uri"] for d in docs] == [str(colour_pngs[0])]
    assert threads and threading.get_ident() not in threads
    both = await asyncio.gather(retriever.ainvoke("red"), retriever.ainvoke("blue"))
    assert all(len(r) == 3 and isinstance(r[0], Document) for r in both)


def test_k_must_be_positive(fake_index: Any) -> None:
    with pytest.raises(ValidationError):
        CLIPImageRetriever(index=fake_index, k=0)
