"""Loading a model leaves the user's logging as it was: open_clip's `logging.info` calls
configure the root logger (basicConfig) when it has no handler; a library must not."""

from __future__ import annotations

import json
import logging
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]

CHILD = """
import json, logging
from clip_multimodal import CLIPEncoder
from clip_multimodal.models import DEMO_MODEL
encoder = CLIPEncoder(DEMO_MODEL, device="cpu")
encoder.embed_texts(["a red circle"])
print(json.dumps([type(h).__name__ for h in logging.getLogger().handlers]))
"""


@pytest.mark.slow  # a fresh Python with torch: the root logger must start untouched
def test_loading_the_demo_model_adds_no_root_handler() -> None:
    done = subprocess.run(
        [sys.executable, "-c", CHILD],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=REPO,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert json.loads(done.stdout.strip().splitlines()[-1]) == []


@contextmanager
def bare_root() -> Iterator[logging.Logger]:
    """The root logger without handlers (pytest adds its own for each test), then restored."""
    root = logging.getLogger()
    saved = list(root.handlers)
    root.handlers.clear()
    try:
        yield root
    finally:
        root.handlers[:] = saved


def test_a_root_handler_added_inside_is_removed() -> None:
    from clip_multimodal.models import keep_root_logging

    with bare_root() as root:
        with keep_root_logging():
            logging.info("open_clip logs like this")  # calls basicConfig: no root handler yet
            assert root.handlers
        assert root.handlers == []


def test_handlers_the_user_installed_are_kept() -> None:
    from clip_multimodal.models import keep_root_logging

    with bare_root() as root:
        mine = logging.NullHandler()
        root.addHandler(mine)
        with keep_root_logging():
            logging.info("configures nothing: the root logger has a handler")
        assert root.handlers == [mine]
