"""Reading image-caption CSVs: separators, header checks, bad rows, relative paths."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest
from PIL import Image

from clip_multimodal.training.csv_data import (
    CsvFormatError,
    check_header,
    detect_separator,
    parse_separator,
    read_pairs,
)


def _image(path: Path, colour: str = "red") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (8, 8), colour).save(path)
    return path


def _csv(path: Path, rows: list[list[str]], sep: str = ",") -> Path:
    with path.open("w", newline="", encoding="utf-8") as f:
        csv.writer(f, delimiter=sep).writerows(rows)
    return path


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        ("filepath,title", ","),
        ("filepath\ttitle", "\t"),
        ("filepath\ttitle, with comma\tlabel", "\t"),
        ("filepath", ","),
    ],
)
def test_separator_is_detected_from_the_header(header: str, expected: str) -> None:
    assert detect_separator(header) == expected


def test_separator_names_are_accepted() -> None:
    assert parse_separator("tab") == "\t"
    assert parse_separator("\\t") == "\t"
    assert parse_separator(";") == ";"
    with pytest.raises(ValueError, match="one character"):
        parse_separator("::")


@pytest.mark.parametrize("sep", [",", "\t"])
def test_rows_resolve_paths_from_the_csv_folder(tmp_path: Path, sep: str) -> None:
    _image(tmp_path / "imgs" / "a.png")
    absolute = _image(tmp_path / "elsewhere" / "b.png", "blue")
    path = _csv(
        tmp_path / "pairs.csv",
        [["filepath", "title"], ["imgs/a.png", "a red square"], [str(absolute), "  a  blue one "]],
        sep,
    )
    table = read_pairs(path, workers=1)
    assert table.separator == sep
    assert table.detected
    assert table.paths == [tmp_path / "imgs" / "a.png", absolute]
    assert table.captions == ["a red square", "a blue one"]  # whitespace normalised
    assert table.bad_rows == []


def test_explicit_separator_wins(tmp_path: Path) -> None:
    _image(tmp_path / "a.png")
    path = _csv(tmp_path / "p.csv", [["filepath", "title"], ["a.png", "x;y"]], sep=";")
    table = read_pairs(path, separator=";", workers=1)
    assert (table.separator, table.detected) == (";", False)
    assert "semicolon (given)" in table.report()[0]


def test_missing_columns_fail_with_the_columns_found_and_the_separator(tmp_path: Path) -> None:
    path = _csv(tmp_path / "p.csv", [["image", "caption"], ["a.png", "x"]])
    with pytest.raises(CsvFormatError) as info:
        read_pairs(path)
    message = str(info.value)
    assert "'filepath' (--csv-img-key)" in message
    assert "'title' (--csv-caption-key)" in message
    assert "Columns found: 'image', 'caption'" in message
    assert "separator: comma, detected from the header" in message
    with pytest.raises(CsvFormatError, match="Columns found: 'image', 'caption'"):
        check_header(path)
    assert check_header(path, "image", "caption") == (",", True)


def test_a_wrong_separator_is_suggested(tmp_path: Path) -> None:
    path = _csv(tmp_path / "p.csv", [["filepath;title"], ["a.png;x"]])
    with pytest.raises(CsvFormatError, match="one column, so set the separator"):
        check_header(path)


def test_missing_and_empty_files_fail(tmp_path: Path) -> None:
    with pytest.raises(CsvFormatError, match="not found"):
        read_pairs(tmp_path / "none.csv")
    (tmp_path / "empty.csv").write_text("")
    with pytest.raises(CsvFormatError, match="empty"):
        read_pairs(tmp_path / "empty.csv")


def test_bad_rows_are_reported_with_line_numbers_and_skipped(tmp_path: Path) -> None:
    _image(tmp_path / "good.png")
    _image(tmp_path / "good2.png", "green")
    (tmp_path / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\nnot really a png")
    rows = [
        ["filepath", "title", "label"],
        ["good.png", "a red square", "red"],  # line 2
        ["missing.png", "a ghost", "red"],  # line 3
        ["broken.png", "a broken file", "red"],  # line 4
        ["good.png", "   ", "red"],  # line 5
        ["", "no path", "red"],  # line 6
        ["good2.png", "a green square", "green", "surplus"],  # line 7
        ["good2.png", "a green square", ""],  # line 8
        ["good2.png", "a green square", "green"],  # line 9
    ]
    table = read_pairs(_csv(tmp_path / "p.csv", rows), label_key="label", workers=2)
    assert table.captions == ["a red square", "a green square"]
    assert table.labels == ["red", "green"]
    reasons = {row.line: row.reason for row in table.bad_rows}
    assert sorted(reasons) == [3, 4, 5, 6, 7, 8]
    assert reasons[3].startswith("image not found")
    assert reasons[4].startswith("unreadable image")
    assert reasons[5] == "empty caption (title)"
    assert reasons[6] == "empty image path (filepath)"
    assert "more fields than the header" in reasons[7]
    assert reasons[8] == "empty label (label)"
    report = table.report(show=2)
    assert report[0].endswith("2 pairs, 6 bad rows skipped (separator: comma (detected))")
    assert report[1].startswith("  skipped line 3: image not found")
    assert report[-1] == "  ... and 4 more"


def test_quoted_fields_may_hold_the_separator_and_newlines(tmp_path: Path) -> None:
    _image(tmp_path / "a.png")
    _image(tmp_path / "b.png")
    rows = [["filepath", "title"], ["a.png", "red, small\nand round"], ["b.png", "x"]]
    table = read_pairs(_csv(tmp_path / "p.csv", rows), workers=1)
    assert table.captions == ["red, small and round", "x"]
    # Line numbers follow the file, so the row after a two-line field is on line 4.
    (tmp_path / "b.png").unlink()
    assert read_pairs(tmp_path / "p.csv", workers=1).bad_rows[0].line == 4
