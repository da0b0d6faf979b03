"""``cgr disable-lm-eval``: remove the startup hook that ``cgr enable-lm-eval`` wrote."""

from __future__ import annotations

import argparse
from typing import Any

from ..tasks import lm_eval_hook
from .subcommand import add_subcommand

EXAMPLES = """\
    cgr disable-lm-eval
    """


def add_to(subparsers: Any) -> None:
    add_subcommand(subparsers, "disable-lm-eval", help="remove the lm-eval startup hook",
                   examples=EXAMPLES, run=run)


def run(args: argparse.Namespace) -> int:
    path = lm_eval_hook.disable()
    print(f"removed {path}" if path else "the lm-eval hook was not installed")
    return 0
