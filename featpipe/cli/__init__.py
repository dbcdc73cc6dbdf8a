"""The `featpipe` command line: a thin adapter over the typed Python API, one module per command
(add_parser, run); COMMANDS lists them in the order data flows."""

# Exit codes: 0 success, 1 a problem with the input or a runtime failure, 2 a usage error.
# A user mistake is reported as one line on stderr, never as a traceback.

from __future__ import annotations

import argparse
import os
import re
import sys
from typing import Sequence

from featpipe.errors import FeatpipeError, UsageError

DEBUG_ENV = "FEATPIPE_DEBUG"
COMMANDS = ("backbones", "layers", "extract", "merge", "info", "recipes", "fit", "finetune",
            "predict", "evaluate", "curriculum-scores")
# Python parameter -> command-line option, where the two are not spelled alike.
_OPTION_NAMES = {"trusted": "trust"}
_OPTION = re.compile(r"`(\w+)(?:=([^`]*))?`")


class _Parser(argparse.ArgumentParser):
    """argparse that reports usage errors as one line with exit code 2."""

    def error(self, message: str) -> None:  # type: ignore[override]
        raise UsageError(f"{self.prog}: {message}")


def build_parser() -> argparse.ArgumentParser:
    import importlib

    from featpipe import __version__

    parser = _Parser(prog="featpipe", description=__doc__.splitlines()[0])
    parser.add_argument("--version", action="version", version=f"featpipe {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    for name in COMMANDS:
        importlib.import_module(f"featpipe.cli.{name.replace('-', '_')}").add_parser(sub)
    return parser


def as_flags(message: str) -> str:
    """Word a library message for the command line: `overwrite=True` -> --overwrite,
    `batch_size` -> --batch-size, `weights=PATH` -> --weights PATH, `pretrained=False` ->
    --no-pretrained.

    Examples
    --------
    >>> as_flags("pass `overwrite=True` to replace it; lower `batch_size`")
    'pass --overwrite to replace it; lower --batch-size'
    """
    def flag(match: re.Match) -> str:
        name, value = match.group(1), match.group(2)
        option = "--" + _OPTION_NAMES.get(name, name).replace("_", "-")
        if value in (None, "True"):
            return option
        if value == "False":
            return "--no-" + option[2:]
        return f"{option} {value.strip(chr(39) + chr(34))}"

    return _OPTION.sub(flag, message)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the `featpipe` console script."""
    code = _run(argv)
    writer = sys.modules.get("featpipe.store.writer")
    if writer is not None and writer.handles_abandoned():
        # A store's write failed and its HDF5 handle cannot be closed: leave without the
        # library's exit handlers, which would crash on it (featpipe.store.writer).
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
    return code


def _one_line_warnings(show_other):
    """A ``warnings.showwarning`` printing featpipe's own warnings as one line each."""
    from featpipe.errors import FeatpipeWarning

    def show(message, category, *args, **kwargs):
        if issubclass(category, FeatpipeWarning):
            print(f"featpipe: warning: {as_flags(str(message))}", file=sys.stderr)
        else:
            show_other(message, category, *args, **kwargs)

    return show


def _run(argv: Sequence[str] | None) -> int:
    import warnings

    try:
        args = build_parser().parse_args(argv)
        with warnings.catch_warnings():
            warnings.showwarning = _one_line_warnings(warnings.showwarning)
            return args.func(args) or 0
    except FeatpipeError as exc:
        print(f"featpipe: error: {as_flags(str(exc))}", file=sys.stderr)
        return exc.exit_code
    except BrokenPipeError:  # the reader stopped early (`featpipe info | head`): not an error
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # no flush at exit
        return 128 + 13  # as when killed by SIGPIPE
    except KeyboardInterrupt:
        print("featpipe: interrupted (an unfinished extract or finetune resumes when re-run)", file=sys.stderr)
        return 130
    except Exception as exc:  # a bug, not a user mistake: one line unless debugging
        if os.environ.get(DEBUG_ENV):
            raise
        print(f"featpipe: internal error: {type(exc).__name__}: {exc} "
              f"(set {DEBUG_ENV}=1 for the traceback)", file=sys.stderr)
        return 1
