"""`make demo`'s job, end to end on the real demo model and an embedded Chroma."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from clip_multimodal import demo


def test_demo_indexes_once_then_finds_the_right_images(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    demo.run(tmp_path)
    out = capsys.readouterr().out
    first = re.search(r"first run: added (\d+).*\(embedded (\d+)\)", out)
    second = re.search(r"second run: added 0, updated 0, unchanged (\d+).*\(embedded 0\)", out)
    assert first and second, out
    assert int(first.group(1)) == int(second.group(1)) > 0
    # each text query's best hit is the named content, in English and in Chinese
    blocks = {b.split("\n")[0]: b for b in out.split("\ntext  ")}
    expected = {
        "'a handwritten seven'": "digits/seven-",
        "'手写的数字七'": "digits/seven-",
        "'a small red circle'": "shapes/red-circle-",
        "'一个红色的小圆形'": "shapes/red-circle-",
        "'一只猫的剪影'": "animals/cat-",
    }
    for query, content in expected.items():
        block = next(b for t, b in blocks.items() if t.endswith(query))
        assert content in block.split("\n")[1], block
    # the image query finds the probe itself first, with a score near 1
    image_block = out.split("\nimage ")[1].split("\n")
    probe = image_block[0].strip()
    assert probe in image_block[1]
    assert float(image_block[1].split()[0]) > 0.99
