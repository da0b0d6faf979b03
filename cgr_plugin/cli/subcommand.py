"""What every ``cgr`` subcommand module shares: how it joins the parser, and its input files.

A subcommand module has one ``add_to(subparsers)`` that declares its arguments with runnable
examples in the epilog (as lm-eval's own ``lm_eval/_cli/`` does) and points ``func`` at its
``run(args) -> exit status``. ``run`` imports the pipeline stage it drives, so ``cgr path``
and ``cgr --help`` load none of them.
"""

from __future__ import annotations

import argparse
import textwrap
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ..errors import CGRError

__all__ = ["CGRError", "add_subcommand", "read_input"]

Run = Callable[[argparse.Namespace], int]


def add_subcommand(subparsers: Any, name: str, *, help: str, examples: str, run: Run,
                   description: str | None = None) -> argparse.ArgumentParser:
    """Add ``cgr NAME`` with ``examples`` (one command per line, ``# comment`` allowed) as its
    epilog; tests run every example line through the parser."""
    parser = subparsers.add_parser(
        name, help=help, description=description and textwrap.fill(description, 79),
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="examples:\n" + textwrap.indent(textwrap.dedent(examples).strip("\n"), "  "))
    parser.set_defaults(func=run)
    return parser


def read_input(path: str | Path, what: str) -> str:
    """A user's input file as text; a file that cannot be read is the user's error, not a bug."""
    try:
        return Path(path).read_text(encoding="utf-8")
    except OSError as err:
        raise CGRError(f"cannot read {what} {path}: {err.strerror or err}") from None
    except UnicodeDecodeError as err:
        raise CGRError(f"cannot read {what} {path}: not UTF-8 text ({err})") from None
