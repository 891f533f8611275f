"""Image-caption pairs from a CSV file, as open_clip's `--train-data` reads them.

One row per pair: a column of image paths (relative paths are taken from the CSV's folder) and a
column of captions. Unlike open_clip, the separator is detected from the header when not given
(open_clip's default, a tab, silently fails on comma files), a header without the named columns
fails at once with the columns it does have, and bad rows (missing or unreadable images, empty
captions) are reported and skipped instead of crashing an epoch later.

Nothing here imports torch: the command reads and checks its data before loading a model.
"""

from __future__ import annotations

import csv
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from clip_multimodal.errors import CLIPMultimodalError, ImageLoadError
from clip_multimodal.images import load_image

__all__ = [
    "BadRow",
    "CsvFormatError",
    "PairTable",
    "check_header",
    "detect_separator",
    "parse_separator",
    "read_pairs",
]

SEPARATOR_NAMES = {"\t": "tab", ",": "comma", ";": "semicolon", "|": "pipe"}
_SPELLED = {"tab": "\t", "\\t": "\t", "comma": ",", "semicolon": ";", "pipe": "|"}


class CsvFormatError(CLIPMultimodalError, ValueError):
    """A CSV file cannot be used at all (missing file, empty, or missing columns)."""


@dataclass(frozen=True)
class BadRow:
    """A skipped row: its line number in the file (the header is line 1) and why."""

    line: int
    reason: str

    def __str__(self) -> str:
        return f"line {self.line}: {self.reason}"


@dataclass
class PairTable:
    """The usable rows of a pair CSV.

    Attributes:
        source: the CSV file.
        separator: the field separator used.
        detected: whether the separator was detected (True) or given.
        paths: resolved image paths, one per usable row.
        captions: the caption of each usable row.
        labels: each row's class label when a label column was asked for, else None.
        bad_rows: the skipped rows, in file order.
    """

    source: Path
    separator: str
    detected: bool
    paths: list[Path] = field(default_factory=list)
    captions: list[str] = field(default_factory=list)
    labels: list[str] | None = None
    bad_rows: list[BadRow] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.paths)

    @property
    def separator_name(self) -> str:
        name = SEPARATOR_NAMES.get(self.separator, repr(self.separator))
        return f"{name} ({'detected' if self.detected else 'given'})"

    def report(self, show: int = 5) -> list[str]:
        """Human-readable lines: the row counts, then the first `show` skipped rows."""
        lines = [
            f"{self.source}: {len(self)} pairs, {len(self.bad_rows)} bad rows skipped "
            f"(separator: {self.separator_name})"
        ]
        lines += [f"  skipped {row}" for row in self.bad_rows[:show]]
        if len(self.bad_rows) > show:
            lines.append(f"  ... and {len(self.bad_rows) - show} more")
        return lines


def parse_separator(value: str) -> str:
    """A separator from the command line: a single character, or tab/comma/semicolon/pipe/\\t."""
    sep = _SPELLED.get(value.lower(), value)
    if len(sep) != 1:
        raise ValueError(
            f"--csv-separator must be one character or tab, comma, semicolon, pipe; got {value!r}"
        )
    return sep


def detect_separator(header: str) -> str:
    """Tab if the header has more tabs than commas, else comma.

    open_clip defaults to tab; most spreadsheets write commas. A header names its columns, so
    whichever character splits it into more fields is the separator.
    """
    return "\t" if header.count("\t") > header.count(",") else ","


def _read_header(csv_path: str | Path, separator: str | None) -> tuple[Path, str, str, bool]:
    """(the path, its header line, the separator, whether it was detected from the header)."""
    path = Path(csv_path).expanduser()
    if not path.is_file():
        raise CsvFormatError(f"CSV file not found: {path}")
    with path.open(encoding="utf-8-sig", newline="") as f:
        header = f.readline().rstrip("\r\n")
    if not header.strip():
        raise CsvFormatError(f"{path} is empty or has an empty header line")
    if separator is None:
        return path, header, detect_separator(header), True
    return path, header, separator, False


def _check_columns(
    path: Path, fieldnames: Sequence[str], wanted: dict[str, str], sep: str, detected: bool
) -> None:
    missing = [(flag, col) for flag, col in wanted.items() if col not in fieldnames]
    if not missing:
        return
    sep_name = SEPARATOR_NAMES.get(sep, repr(sep))
    how = "detected from the header" if detected else "as given"
    found = ", ".join(repr(c) for c in fieldnames)
    names = ", ".join(f"{col!r} ({flag})" for flag, col in missing)
    hint = " Name the right columns with " + ", ".join(f"{flag} NAME" for flag, _ in missing)
    if len(fieldnames) == 1:
        hint += "; the whole header read as one column, so set the separator: --csv-separator"
    raise CsvFormatError(
        f"{path}: the header has no column {names}. Columns found: {found} "
        f"(separator: {sep_name}, {how}).{hint}."
    )


def _wanted(img_key: str, caption_key: str, label_key: str | None) -> dict[str, str]:
    wanted = {"--csv-img-key": img_key, "--csv-caption-key": caption_key}
    if label_key:
        wanted["--val-label-key"] = label_key
    return wanted


def check_header(
    csv_path: str | Path,
    img_key: str = "filepath",
    caption_key: str = "title",
    separator: str | None = None,
    label_key: str | None = None,
) -> tuple[str, bool]:
    """Check only the header line: fast, before any model loads.

    Returns:
        (the separator, whether it was detected).

    Raises:
        CsvFormatError: the file is missing or empty, or its header lacks a named column.
    """
    path, header, sep, detected = _read_header(csv_path, separator)
    fieldnames = next(csv.reader([header], delimiter=sep))
    _check_columns(path, fieldnames, _wanted(img_key, caption_key, label_key), sep, detected)
    return sep, detected


def read_pairs(
    csv_path: str | Path,
    img_key: str = "filepath",
    caption_key: str = "title",
    separator: str | None = None,
    label_key: str | None = None,
    workers: int = 4,
    check_images: bool = True,
) -> PairTable:
    """Read and check an image-caption CSV.

    Args:
        csv_path: the CSV file (UTF-8, a header line naming the columns).
        img_key: the column of image paths; relative paths start at the CSV's folder.
        caption_key: the column of captions.
        separator: the field separator; None detects tab or comma from the header.
        label_key: an optional column of class labels (for zero-shot accuracy).
        workers: threads decoding images to check them.
        check_images: decode every image once, so unreadable files are skipped up front.

    Returns:
        The usable rows and the skipped ones with their reasons.

    Raises:
        CsvFormatError: the file is missing or empty, or its header lacks a named column.
    """
    path, _, sep, detected = _read_header(csv_path, separator)
    table = PairTable(path, sep, detected, labels=[] if label_key else None)
    wanted = _wanted(img_key, caption_key, label_key)
    candidates: list[tuple[int, Path, str, str | None]] = []
    with path.open(encoding="utf-8-sig", newline="") as f:
        reader = csv.DictReader(f, delimiter=sep)
        _check_columns(path, reader.fieldnames or [], wanted, sep, detected)
        for row in reader:
            line = reader.line_num
            problem, item = _parse_row(row, path.parent, img_key, caption_key, label_key)
            if problem:
                table.bad_rows.append(BadRow(line, problem))
            elif item is not None:
                candidates.append((line, *item))
    _keep_readable(table, candidates, workers, check_images)
    return table


def _parse_row(
    row: dict[str, Any], base: Path, img_key: str, caption_key: str, label_key: str | None
) -> tuple[str | None, tuple[Path, str, str | None] | None]:
    if None in row:  # more fields than the header names: usually an unquoted separator
        return "more fields than the header (quote fields that contain the separator)", None
    raw_path = (row.get(img_key) or "").strip()
    caption = " ".join((row.get(caption_key) or "").split())
    label = (row.get(label_key) or "").strip() if label_key else None
    if not raw_path:
        return f"empty image path ({img_key})", None
    if not caption:
        return f"empty caption ({caption_key})", None
    if label_key and not label:
        return f"empty label ({label_key})", None
    image = Path(raw_path).expanduser()
    return None, (image if image.is_absolute() else base / image, caption, label)


def _check_image(path: Path) -> str | None:
    if not path.is_file():
        return f"image not found: {path}"
    try:
        load_image(path)
    except ImageLoadError as exc:
        return f"unreadable image: {exc.source}: {exc.reason}"
    return None


def _keep_readable(
    table: PairTable,
    candidates: list[tuple[int, Path, str, str | None]],
    workers: int,
    check_images: bool,
) -> None:
    """Append the rows whose image exists (and decodes, when checking), in file order."""
    check: Callable[[Path], str | None] = (
        _check_image if check_images else lambda p: None if p.is_file() else f"image not found: {p}"
    )
    with ThreadPoolExecutor(max(1, workers)) as pool:
        problems = list(pool.map(check, [c[1] for c in candidates]))
    bad = list(table.bad_rows)
    for (line, image, caption, label), problem in zip(candidates, problems, strict=True):
        if problem:
            bad.append(BadRow(line, problem))
            continue
        table.paths.append(image)
        table.captions.append(caption)
        if table.labels is not None and label is not None:
            table.labels.append(label)
    table.bad_rows = sorted(bad, key=lambda r: r.line)
