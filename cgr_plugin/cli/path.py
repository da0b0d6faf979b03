"""``cgr path``: the packaged task folder, for plain ``lm_eval --include_path``."""

from __future__ import annotations

import argparse
from typing import Any

from .._paths import TASKS_DIR
from .subcommand import add_subcommand

EXAMPLES = """\
    cgr path
    lm_eval validate --tasks cgr_arc_easy --include_path "$(cgr path)"  # plain lm-eval
    """


def add_to(subparsers: Any) -> None:
    add_subcommand(subparsers, "path", help="print the packaged task folder", examples=EXAMPLES,
                   run=run)


def run(args: argparse.Namespace) -> int:
    print(TASKS_DIR)
    return 0
