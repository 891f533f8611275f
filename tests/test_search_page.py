"""The search page in a real browser: Debian's headless Chromium driven by Playwright.

The service runs under uvicorn on loopback over the demo images indexed with the real demo
model. The page is used as a person would: type, upload, drop, switch to "What is this?".
Set CLIP_MM_SCREENSHOT=docs/search-page.png to also save the README's screenshot.
"""

from __future__ import annotations

import base64
import os
import re
import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import chromadb
import pytest
from playwright.sync_api import expect

from clip_multimodal.index import ImageIndex
from clip_multimodal.server import ServerSettings, create_app
from tests.server_helpers import running_server

pytestmark = pytest.mark.browser

SEVEN = "digits/seven-000.png"
RED_CIRCLE = "shapes/red-circle-small-000.png"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
TIMEOUT_MS = 20_000
expect.set_options(timeout=TIMEOUT_MS)  # a shared CI machine can be slow to answer


def _chromium() -> str:
    found = shutil.which("chromium") or "/usr/bin/chromium"
    if not Path(found).exists():
        raise RuntimeError("Chromium is not installed: make test installs it (apt-get, as root)")
    return found


@pytest.fixture(scope="module")
def library(
    tmp_path_factory: pytest.TempPathFactory, demo_encoder: Any, demo_images_dir: Path
) -> tuple[Any, str, Path]:
    root = tmp_path_factory.mktemp("page")
    client = chromadb.PersistentClient(path=str(root / "chroma"))
    name = f"page-{uuid.uuid4().hex[:12]}"
    ImageIndex(demo_encoder, name, client=client).index_folder(demo_images_dir, progress=False)
    return client, name, root


def _serve(library: tuple[Any, str, Path], encoder: Any, **settings: Any) -> Any:
    client, name, root = library
    app = create_app(
        ServerSettings(collection=name, data_dir=root, **settings), encoder=encoder, client=client
    )
    return running_server(app)


@pytest.fixture(scope="module")
def base_url(library: tuple[Any, str, Path], demo_encoder: Any) -> Iterator[str]:
    with _serve(library, demo_encoder) as url:
        yield url


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        chromium = pw.chromium.launch(
            executable_path=_chromium(), args=CHROMIUM_ARGS, headless=True
        )
        yield chromium
        chromium.close()


@pytest.fixture
def page(browser: Any) -> Iterator[Any]:
    context = browser.new_context(viewport={"width": 1100, "height": 820})
    page = context.new_page()
    page.set_default_timeout(TIMEOUT_MS)
    errors: list[str] = []
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.console_errors = errors
    yield page
    context.close()


def _open(page: Any, url: str) -> None:
    page.goto(url)
    page.wait_for_selector("body[data-ready='true']")


def _results(page: Any) -> list[dict[str, str]]:
    page.wait_for_selector("#results .result")
    found: list[dict[str, str]] = page.eval_on_selector_all(
        "#results .result", "els => els.map(e => ({uri: e.dataset.uri, score: e.dataset.score}))"
    )
    return found


def _thumbnails_loaded(page: Any, n: int) -> None:
    page.wait_for_function(
        f"""() => {{
            const imgs = [...document.querySelectorAll('#results .result img')].slice(0, {n});
            return imgs.length === {n} && imgs.every(i => i.complete && i.naturalWidth > 0);
        }}"""
    )


def test_typing_a_query_shows_the_seven_with_thumbnails_and_scores(
    page: Any, base_url: str, tmp_path: Path
) -> None:
    _open(page, base_url)
    page.fill("#query", "a handwritten seven")
    page.press("#query", "Enter")
    results = _results(page)
    assert any(r["uri"].endswith(SEVEN) for r in results[:3]), results[:3]
    scores = [float(r["score"]) for r in results]
    assert scores == sorted(scores, reverse=True)
    _thumbnails_loaded(page, 4)
    assert page.inner_text("#results .result .score").strip() == f"{scores[0]:.3f}"
    assert "for “a handwritten seven”" in page.inner_text("#status")
    page.fill("#query", "a silhouette of a zebra")
    page.press("#query", "Enter")
    # "Searching …zebra…" shows first; wait for the results line of this query
    expect(page.locator("#status")).to_have_text(re.compile(r"^\d+ results? for “a silhouette"))
    zebras = [r["uri"] for r in _results(page)[:4]]
    assert all("/animals/zebra-" in uri for uri in zebras), zebras
    _thumbnails_loaded(page, 12)
    shot = tmp_path / "search-page.png"
    page.screenshot(path=str(shot))
    assert 10_000 < shot.stat().st_size < 300_000
    target = os.environ.get("CLIP_MM_SCREENSHOT")
    if target:
        shutil.copyfile(shot, target)
    assert page.console_errors == []


def test_chinese_queries_find_the_seven_and_the_small_red_circles(page: Any, base_url: str) -> None:
    # The demo model learned Chinese captions too; the page sends the typed text as is.
    _open(page, base_url)
    page.fill("#query", "手写的数字七")
    page.press("#query", "Enter")
    expect(page.locator("#status")).to_have_text(re.compile(r"^\d+ results? for “手写的数字七”$"))
    results = _results(page)
    assert results[0]["uri"].endswith(SEVEN), results[:3]  # the folder's only seven
    page.fill("#query", "一个红色的小圆形")
    page.press("#query", "Enter")
    expect(page.locator("#status")).to_have_text(
        re.compile(r"^\d+ results? for “一个红色的小圆形”$")
    )
    top = [r["uri"] for r in _results(page)[:2]]
    # the folder's two small red circles, ahead of the large orange ones
    assert all("/shapes/red-circle-small-" in uri for uri in top), top
    assert page.console_errors == []


def test_uploading_an_image_shows_similar_images(
    page: Any, base_url: str, demo_images_dir: Path
) -> None:
    _open(page, base_url)
    page.set_input_files("#search-file", str(demo_images_dir / RED_CIRCLE))
    expect(page.locator("#status")).to_contain_text("similar to")
    results = _results(page)
    assert results[0]["uri"].endswith(RED_CIRCLE) and float(results[0]["score"]) > 0.99
    assert any("red-circle-small-" in r["uri"] for r in results[1:4]), results[:4]
    assert page.is_visible("#search-preview")
    _thumbnails_loaded(page, 3)
    assert page.console_errors == []


def test_dropping_an_image_searches_by_it(page: Any, base_url: str, demo_images_dir: Path) -> None:
    _open(page, base_url)
    data = base64.b64encode((demo_images_dir / SEVEN).read_bytes()).decode()
    transfer = page.evaluate_handle(
        """(b64) => {
            const bytes = Uint8Array.from(atob(b64), c => c.charCodeAt(0));
            const dt = new DataTransfer();
            dt.items.add(new File([bytes], 'dropped-seven.png', {type: 'image/png'}));
            return dt;
        }""",
        data,
    )
    page.dispatch_event("#search-drop", "dragover", {"dataTransfer": transfer})
    page.dispatch_event("#search-drop", "drop", {"dataTransfer": transfer})
    expect(page.locator("#status")).to_contain_text("dropped-seven.png")
    assert _results(page)[0]["uri"].endswith(SEVEN)


def test_what_is_this_shows_label_probabilities(
    page: Any, base_url: str, demo_images_dir: Path
) -> None:
    _open(page, base_url)
    page.click("#tab-classify")
    assert page.is_hidden("#view-search")
    page.set_input_files("#classify-file", str(demo_images_dir / SEVEN))
    page.wait_for_selector("#predictions .prediction")
    labels = page.eval_on_selector_all(
        "#predictions .prediction", "els => els.map(e => e.dataset.label)"
    )
    assert labels[0] == "a handwritten seven"
    assert len(labels) == 5
    percents = page.eval_on_selector_all(
        "#predictions .pct", "els => els.map(e => parseFloat(e.textContent))"
    )
    assert sum(percents) == pytest.approx(100, abs=0.5)
    assert "Most likely: a handwritten seven" in page.inner_text("#classify-status")
    # New labels, same image: asking again re-classifies.
    page.fill("#labels", "a silhouette of a cat, a handwritten seven")
    page.click("#classify-form button[type=submit]")
    expect(page.locator("#predictions .prediction")).to_have_count(2)
    assert page.console_errors == []


def test_errors_are_friendly_and_a_token_unlocks_the_page(
    page: Any, library: tuple[Any, str, Path], demo_encoder: Any
) -> None:
    with _serve(library, demo_encoder, token="page-token") as url:
        _open(page, url)
        page.fill("#query", "a handwritten seven")
        page.press("#query", "Enter")
        page.wait_for_selector("#error:not([hidden])")
        assert "needs an access token" in page.inner_text("#error")
        page.click(".settings summary")
        page.fill("#token", "page-token")
        page.press("#query", "Enter")
        page.wait_for_selector("#error[hidden]", state="attached")
        results = _results(page)
        assert any(r["uri"].endswith(SEVEN) for r in results[:3])
        _thumbnails_loaded(page, 3)  # fetched with the token, shown as blob: URLs
        src = page.get_attribute("#results .result img", "src")
        assert src is not None and src.startswith("blob:")


def test_an_empty_query_and_a_non_image_get_plain_messages(
    page: Any, base_url: str, tmp_path: Path
) -> None:
    _open(page, base_url)
    page.press("#query", "Enter")
    assert "Type what you are looking for" in page.inner_text("#error")
    text_file = tmp_path / "notes.txt"
    text_file.write_text("not an image")
    page.set_input_files("#search-file", str(text_file))
    assert "notes.txt is not an image" in page.inner_text("#error")


def test_the_page_fits_a_phone(browser: Any, base_url: str) -> None:
    context = browser.new_context(
        viewport={"width": 390, "height": 844}, is_mobile=True, has_touch=True
    )
    page = context.new_page()
    page.set_default_timeout(TIMEOUT_MS)
    try:
        _open(page, base_url)
        page.fill("#query", "a silhouette of a cat")
        page.press("#query", "Enter")
        _results(page)
        _thumbnails_loaded(page, 2)
        width = page.evaluate("document.documentElement.scrollWidth")
        assert width <= 390, width
        columns = page.evaluate(
            "getComputedStyle(document.querySelector('#results')).gridTemplateColumns.split(' ').length"
        )
        assert columns == 2
        button = page.eval_on_selector("#text-form button", "b => b.getBoundingClientRect().height")
        assert button >= 40  # a comfortable touch target
    finally:
        context.close()
