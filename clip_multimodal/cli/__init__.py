"""The `clip-multimodal` command: index, search, classify, serve, train, demo, info, models.

`main(argv)` parses, runs the command and returns the exit status: 0 success, 1 a runtime
error or a failed item, 2 a usage error. Errors print one line; `--debug` adds the traceback.
`--help` and argument errors never import torch.
"""

from __future__ import annotations

import argparse
import difflib
import sys
import traceback
from collections.abc import Callable, Sequence

from clip_multimodal.cli._commands import COMMANDS, run_train
from clip_multimodal.cli._context import UsageError
from clip_multimodal.cli._parser import build_parser, new_parser

__all__ = ["UsageError", "build_parser", "main", "new_parser"]


def main(argv: Sequence[str] | None = None) -> int:
    """Run `clip-multimodal` with `argv` (default: `sys.argv[1:]`); return the exit status."""
    args_list = list(sys.argv[1:] if argv is None else argv)
    if args_list[:1] == ["train"]:  # the training command parses its own arguments
        return _guarded(lambda: run_train(args_list[1:]), debug="--debug" in args_list)
    parser = build_parser()
    try:
        _suggest_command(parser, args_list[:1])
        args = parser.parse_args(args_list)
    except SystemExit as exc:  # --help, --version, or a usage error argparse printed
        return exc.code if isinstance(exc.code, int) else 2
    return _guarded(lambda: COMMANDS[args.command](args), debug=args.debug, command=args.command)


def _suggest_command(parser: argparse.ArgumentParser, first: list[str]) -> None:
    """argparse only lists the commands; name the one a misspelling is closest to."""
    if not first or first[0].startswith("-") or first[0] in COMMANDS:
        return
    close = difflib.get_close_matches(first[0], list(COMMANDS), n=1)
    if close:
        commands = ", ".join(COMMANDS)
        parser.exit(
            2,
            f"{parser.format_usage()}{parser.prog}: error: unknown command {first[0]!r}; "
            f"did you mean {close[0]!r}? (commands: {commands})\n",
        )


def _guarded(run: Callable[[], int], *, debug: bool, command: str | None = None) -> int:
    try:
        return int(run())
    except UsageError as exc:
        hint = f" (see: clip-multimodal {command} --help)" if command else ""
        print(f"error: {exc}{hint}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except Exception as exc:
        if debug:
            traceback.print_exc()
        print(f"error: {_one_line(exc)}", file=sys.stderr)
        return 1


def _one_line(exc: Exception) -> str:
    from clip_multimodal.errors import CLIPMultimodalError

    text = " ".join(str(exc).split()) or type(exc).__name__
    if isinstance(exc, (CLIPMultimodalError, OSError, ValueError)):
        return text
    return f"{type(exc).__name__}: {text} (run with --debug for the traceback)"
