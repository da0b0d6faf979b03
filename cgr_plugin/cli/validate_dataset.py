"""``cgr validate-dataset``: every problem of dataset task YAMLs and of every row of their data."""

from __future__ import annotations

import argparse
from typing import Any

from .subcommand import add_subcommand

EXAMPLES = """\
    cgr validate-dataset my_tasks/my_mcqa.yaml
    cgr validate-dataset my_tasks/*.yaml --all
    """


def add_to(subparsers: Any) -> None:
    parser = add_subcommand(
        subparsers, "validate-dataset",
        help="check dataset task YAMLs and every row of their data",
        description="Check each task YAML (keys, field mapping, splits, few-shot, letters) and "
                    "read every row of every split; print every problem as FILE:line N: item "
                    "ID: field 'X': message, then a summary. Exit status 1 when any problem was "
                    "found. Schema: docs/datasets.md.",
        examples=EXAMPLES, run=run)
    parser.add_argument("yamls", nargs="+", metavar="FILE.yaml", help="task YAML files")
    parser.add_argument("--all", action="store_true",
                        help="print every repeat of a problem (default: 5, then a count)")


def run(args: argparse.Namespace) -> int:
    from ..tasks.validate import validate_main

    return validate_main(args.yamls, show_all=args.all)
